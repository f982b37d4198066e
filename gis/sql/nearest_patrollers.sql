-- N nearest workers to a point by their latest fix (KNN on worker_positions.geom_4548).
SELECT w.id AS worker_id, w.name, w.kind, w.grid_id,
       ST_Distance(wp.geom_4548, ST_Transform(ST_SetSRID(ST_MakePoint(:lon, :lat), 4490), 4548)) AS distance_m,
       extract(epoch FROM CAST(:now AS timestamptz) - wp.t) AS fix_age_s,
       ST_X(wp.geom) AS lon, ST_Y(wp.geom) AS lat, wp.t, wp.device_id
  FROM worker_positions wp
  JOIN workers w ON w.id = wp.worker_id
 WHERE w.active
   AND (CAST(:kind AS text) IS NULL OR w.kind = :kind)
   AND (CAST(:max_age_s AS double precision) IS NULL
        OR wp.t >= CAST(:now AS timestamptz) - make_interval(secs => :max_age_s))
 ORDER BY wp.geom_4548 <-> ST_Transform(ST_SetSRID(ST_MakePoint(:lon, :lat), 4490), 4548)
 LIMIT :n
