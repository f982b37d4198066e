-- The dispatch queue: events not yet handled, most urgent priority first (A..D), then oldest.
SELECT e.id, e.category, e.priority, e.status, e.worker_id, e.reported_at, e.deadline_at,
       extract(epoch FROM e.deadline_at - CAST(:now AS timestamptz)) AS seconds_left,
       e.deadline_at < CAST(:now AS timestamptz) AS overdue,
       ST_X(e.geom) AS lon, ST_Y(e.geom) AS lat, e.grid_id
  FROM events e
 WHERE e.status IN ('reported', 'accepted', 'dispatched', 'en_route', 'on_scene')
   AND (CAST(:status AS text) IS NULL OR e.status = :status)
 ORDER BY e.priority, e.reported_at, e.id
 LIMIT :limit
