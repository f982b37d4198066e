-- Events per metric square (EPSG:4548, origin 0,0, side :size m); only non-empty squares.
-- A point belongs to the square [i*size, (i+1)*size) x [j*size, (j+1)*size).
-- Counted first (hash aggregate over an index-only scan of events_reported_at_cover_idx), then
-- only the non-empty squares are built and transformed.
WITH counts AS MATERIALIZED (
    SELECT floor(ST_X(e.geom_4548) / :size)::integer AS i, floor(ST_Y(e.geom_4548) / :size)::integer AS j,
           count(*) AS count
      FROM events e
     WHERE e.reported_at >= :start AND e.reported_at < :end
       AND (CAST(:categories AS text[]) IS NULL OR e.category = ANY (CAST(:categories AS text[])))
     GROUP BY 1, 2
)
SELECT i || '_' || j AS cell_id, i, j, count,
       ST_AsGeoJSON(ST_Transform(ST_SetSRID(ST_Square(:size, i, j), 4548), 4490), 7, 0)::json AS geometry
  FROM counts
 ORDER BY i, j
