-- The road-graph vertex nearest each point (:xs, :ys EPSG:4548, in order) and the straight leg.
SELECT p.i::integer AS i, v.id AS vid, v.leg_m
  FROM unnest(CAST(:xs AS double precision[]), CAST(:ys AS double precision[])) WITH ORDINALITY AS p(x, y, i)
 CROSS JOIN LATERAL (
       SELECT rv.id, ST_Distance(rv.geom_4548, ST_SetSRID(ST_MakePoint(p.x, p.y), 4548)) AS leg_m
         FROM road_vertices rv
        ORDER BY rv.geom_4548 <-> ST_SetSRID(ST_MakePoint(p.x, p.y), 4548), rv.id
        LIMIT 1) v
 ORDER BY p.i
