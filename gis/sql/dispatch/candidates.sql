-- Workers available for a dispatch to (:lon, :lat) at :now, nearest first (straight line):
-- active, on duty (duty_roster), not busy with another event (dispatched / en_route / on_scene,
-- dispatched in the :busy_s seconds before :now (setting
-- dispatch_busy_window_h): an older open dispatch is a stale case, not today's work),
-- with a fix in (:now - :max_age_s, :now] (their last one is where they are).
SELECT w.id AS worker_id, w.name, w.kind, w.grid_id,
       CASE w.kind WHEN 'vehicle' THEN 'drive' ELSE 'walk' END AS mode,
       f.device_id, f.t, ST_X(f.geom) AS lon, ST_Y(f.geom) AS lat,
       extract(epoch FROM CAST(:now AS timestamptz) - f.t) AS fix_age_s,
       ST_Distance(f.geom_4548, p.g) AS distance_m
  FROM workers w
 CROSS JOIN (SELECT ST_Transform(ST_SetSRID(ST_MakePoint(:lon, :lat), 4490), 4548) AS g) p
 CROSS JOIN LATERAL (
       SELECT x.device_id, x.t, x.geom, x.geom_4548 FROM gps_fixes x
        WHERE x.worker_id = w.id AND x.t <= CAST(:now AS timestamptz)
          AND x.t > CAST(:now AS timestamptz) - make_interval(secs => CAST(:max_age_s AS double precision))
        ORDER BY x.t DESC LIMIT 1) f
 WHERE w.active
   AND on_duty(w.id, CAST(:now AS timestamptz))
   AND NOT EXISTS (SELECT 1 FROM events e
                    WHERE e.worker_id = w.id AND e.status IN ('dispatched', 'en_route', 'on_scene')
                      AND e.id IS DISTINCT FROM CAST(:event_id AS text)
                      AND e.dispatched_at > CAST(:now AS timestamptz) - make_interval(secs => CAST(:busy_s AS double precision)))
 ORDER BY distance_m, w.id
 LIMIT :k
