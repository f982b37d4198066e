-- Road length per grid cell and the part within :buffer_m of any cleaned patrol track in [:t0, :t1).
WITH c AS MATERIALIZED (
    SELECT * FROM clean_fixes(:t0, :t1, NULL, :max_speed, :jitter_k, :min_step_m, :max_gap_s)
     WHERE status IN ('start', 'gap', 'reanchor', 'kept')
),
lines AS MATERIALIZED (
    SELECT worker_id, seg, ST_MakeLine(ST_SetSRID(ST_MakePoint(x, y), 4548) ORDER BY t) AS geom
      FROM c GROUP BY worker_id, seg HAVING count(*) >= 2
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
