-- Alarms raised since :since (and before :until when given), newest first.
SELECT a.id, a.kind, a.worker_id, w.name AS worker_name, a.device_id, a.geofence_id, g.name AS geofence_name,
       a.t_start, a.t_end, a.raised_at, a.created_at, a.acknowledged_at, a.details,
       ST_X(a.geom) AS lon, ST_Y(a.geom) AS lat
  FROM alarms a
  LEFT JOIN workers w ON w.id = a.worker_id
  LEFT JOIN geofences g ON g.id = a.geofence_id
 WHERE a.raised_at >= :since
   AND (CAST(:until AS timestamptz) IS NULL OR a.raised_at < :until)
   AND (CAST(:kind AS text) IS NULL OR a.kind = :kind)
 ORDER BY a.raised_at DESC, a.id DESC
 LIMIT :limit
