-- Check-in compliance per worker shift in [:t0, :t1): the checkpoints of the worker's grid cell,
-- and which were visited (a fix within radius_m during the shift; checkpoint_visits()).
WITH shifts AS MATERIALIZED (SELECT * FROM worker_shifts(:t0, :t1, :shift_gap_s)),
visits AS MATERIALIZED (SELECT * FROM checkpoint_visits(:t0, :t1, :shift_gap_s)),
req AS (
    SELECT s.worker_id, s.shift_start, s.shift_end, cp.id AS checkpoint_id
      FROM shifts s
      JOIN workers w ON w.id = s.worker_id
      LEFT JOIN checkpoints cp ON cp.grid_id = w.grid_id
     WHERE CAST(:worker_id AS text) IS NULL OR s.worker_id = :worker_id
)
SELECT r.worker_id, r.shift_start, r.shift_end,
       count(r.checkpoint_id) AS required,
       count(v.checkpoint_id) AS visited,
       COALESCE(array_agg(r.checkpoint_id ORDER BY r.checkpoint_id)
                FILTER (WHERE r.checkpoint_id IS NOT NULL AND v.checkpoint_id IS NULL), '{}') AS missed,
       COALESCE(array_agg(r.checkpoint_id ORDER BY r.checkpoint_id)
                FILTER (WHERE v.checkpoint_id IS NOT NULL), '{}') AS visited_ids
  FROM req r
  LEFT JOIN visits v
    ON v.worker_id = r.worker_id AND v.shift_start = r.shift_start AND v.checkpoint_id = r.checkpoint_id
 GROUP BY r.worker_id, r.shift_start, r.shift_end
 ORDER BY r.worker_id, r.shift_start
