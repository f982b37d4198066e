-- Road length per grid cell and the part within :buffer_m of any cleaned patrol track in [:t0, :t1).
-- gps_fixes is named in this statement so that its lock is taken before the statement's snapshot:
-- a read queued behind the swap of a replacing GPS load (gis/loaders/gps_replace.py) then reads the
-- new fixes. clean_fixes() is STABLE and reads with this snapshot; locking only inside it, a read
-- queued there would find the old partitions gone and the new rows not yet visible to it (empty).
WITH lock_fixes_first AS (SELECT FROM gps_fixes LIMIT 0),
c AS MATERIALIZED (
    SELECT * FROM clean_fixes(:t0, :t1, NULL, :max_speed, :jitter_k, :min_step_m, :max_gap_s)
     WHERE status IN ('start', 'gap', 'reanchor', 'kept')
),
-- Each track segment is cut into runs of 32 fixes that share their end points, and the runs are
-- buffered one by one: GEOS buffers a long self-crossing walk in quadratic time (a day of 50
-- random-walk patrols: 100 s as whole lines, 5 s as runs). The union of the runs' buffers is the
-- track's buffer, up to the arc discretisation (quad_segs=8: < 0.1 m at a 20 m radius).
numbered AS (
    SELECT worker_id, seg, t, x, y,
           row_number() OVER (PARTITION BY worker_id, seg ORDER BY t) - 1 AS k,
           count(*) OVER (PARTITION BY worker_id, seg) AS n
      FROM c
),
runs AS (
    SELECT worker_id, seg, t, x, y, k / 32 AS run FROM numbered WHERE n >= 2
    UNION ALL  -- a run's first fix also ends the previous run
    SELECT worker_id, seg, t, x, y, k / 32 - 1 FROM numbered WHERE n >= 2 AND k > 0 AND k % 32 = 0
),
lines AS MATERIALIZED (
    SELECT ST_MakeLine(ST_SetSRID(ST_MakePoint(x, y), 4548) ORDER BY t) AS geom
      FROM runs GROUP BY worker_id, seg, run HAVING count(*) >= 2
),
cover AS MATERIALIZED (
    SELECT ST_Union(ST_Buffer(geom, :buffer_m, 'quad_segs=8')) AS geom FROM lines
),
gr AS (
    SELECT g.id, ST_Intersection(ST_Union(r.geom_4548), g.geom_4548) AS roads
      FROM grid_cells g JOIN roads r ON ST_Intersects(r.geom_4548, g.geom_4548)
     GROUP BY g.id, g.geom_4548
)
SELECT g.id AS grid_id, g.name,
       COALESCE(ST_Length(gr.roads), 0) AS road_m,
       COALESCE(ST_Length(ST_Intersection(gr.roads, cover.geom)), 0) AS covered_m
  FROM grid_cells g
  LEFT JOIN gr ON gr.id = g.id
 CROSS JOIN cover
 ORDER BY g.id
