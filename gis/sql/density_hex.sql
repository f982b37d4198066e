-- Events per hexagon of ST_HexagonGrid(:size) in EPSG:4548 (:size = edge length, m); only
-- non-empty hexagons. A point on a shared edge goes to the hexagon with the smallest (i, j).
WITH ev AS MATERIALIZED (
    SELECT e.id, e.geom_4548
      FROM events e
     WHERE e.reported_at >= :start AND e.reported_at < :end
       AND (CAST(:categories AS text[]) IS NULL OR e.category = ANY (CAST(:categories AS text[])))
),
hex AS MATERIALIZED (
    SELECT h.i, h.j, h.geom
      FROM ST_HexagonGrid(:size, (SELECT ST_SetSRID(ST_Extent(geom_4548)::geometry, 4548) FROM ev)) h
),
assigned AS (
    SELECT DISTINCT ON (ev.id) ev.id, hex.i, hex.j
      FROM ev JOIN hex ON ST_Intersects(hex.geom, ev.geom_4548)
     ORDER BY ev.id, hex.i, hex.j
)
SELECT a.i || '_' || a.j AS cell_id, a.i, a.j, count(*) AS count,
       ST_AsGeoJSON(ST_Transform(hex.geom, 4490), 7, 0)::json AS geometry
  FROM assigned a JOIN hex ON hex.i = a.i AND hex.j = a.j
 GROUP BY a.i, a.j, hex.geom
 ORDER BY a.i, a.j
