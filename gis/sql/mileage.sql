-- Distance per worker over [:t0, :t1) from cleaned fixes (spikes and jitter removed; clean_fixes()).
-- gps_fixes is named in this statement so that its lock is taken before the statement's snapshot:
-- a read queued behind the swap of a replacing GPS load (gis/loaders/gps_replace.py) then reads the
-- new fixes. clean_fixes() is STABLE and reads with this snapshot; locking only inside it, a read
-- queued there would find the old partitions gone and the new rows not yet visible to it (empty).
WITH lock_fixes_first AS (SELECT FROM gps_fixes LIMIT 0)
SELECT cf.worker_id, w.name, w.kind,
       sum(cf.step_m) / 1000.0 AS km,
       count(*) AS fixes,
       count(*) FILTER (WHERE cf.status = 'spike') AS spikes,
       count(*) FILTER (WHERE cf.status = 'jitter') AS jitter,
       count(*) FILTER (WHERE cf.status IN ('gap', 'reanchor')) AS gaps,
       min(cf.t) AS first_fix, max(cf.t) AS last_fix
  FROM clean_fixes(:t0, :t1, CAST(:worker_id AS text), :max_speed, :jitter_k, :min_step_m, :max_gap_s) cf
  JOIN workers w ON w.id = cf.worker_id
 GROUP BY cf.worker_id, w.name, w.kind
 ORDER BY cf.worker_id
