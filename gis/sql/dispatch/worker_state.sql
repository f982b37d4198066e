-- One worker's availability at :now: active, on duty, the open event it works on (if any).
SELECT w.id, w.active, on_duty(w.id, CAST(:now AS timestamptz)) AS on_duty,
       (SELECT e.id FROM events e
         WHERE e.worker_id = w.id AND e.status IN ('dispatched', 'en_route', 'on_scene')
           AND e.id <> :event_id
           AND e.dispatched_at > CAST(:now AS timestamptz) - make_interval(secs => CAST(:busy_s AS double precision)) ORDER BY e.dispatched_at DESC NULLS LAST LIMIT 1) AS busy_with
  FROM workers w WHERE w.id = :worker_id
