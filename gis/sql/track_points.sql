-- One worker's fixes in [:t0, :t1) with the cleaning verdict, lon/lat (EPSG:4490) and the
-- ellipsoidal ground height there (h_ground, NULL without a DEM grid).
-- gps_fixes is named in this statement so that its lock is taken before the statement's snapshot:
-- a read queued behind the swap of a replacing GPS load (gis/loaders/gps_replace.py) then reads the
-- new fixes. clean_fixes() is STABLE and reads with this snapshot; locking only inside it, a read
-- queued there would find the old partitions gone and the new rows not yet visible to it (empty).
WITH lock_fixes_first AS (SELECT FROM gps_fixes LIMIT 0)
SELECT cf.t, cf.status, cf.step_m, cf.seg, cf.accuracy, cf.device_id,
       ST_X(p.g) AS lon, ST_Y(p.g) AS lat, ground_height(cf.x, cf.y, true) AS h_ground
  FROM clean_fixes(:t0, :t1, CAST(:worker_id AS text), :max_speed, :jitter_k, :min_step_m, :max_gap_s) cf
 CROSS JOIN LATERAL (SELECT ST_Transform(ST_SetSRID(ST_MakePoint(cf.x, cf.y), 4548), 4490) AS g) p
 ORDER BY cf.t
