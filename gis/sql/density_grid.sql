-- Events per management grid cell (all cells, zeros included) for a time window and categories.
SELECT g.id AS cell_id, g.name, count(e.id) AS count,
       ST_AsGeoJSON(g.geom, 7, 0)::json AS geometry
  FROM grid_cells g
  LEFT JOIN events e
    ON e.grid_id = g.id
   AND e.reported_at >= :start AND e.reported_at < :end
   AND (CAST(:categories AS text[]) IS NULL OR e.category = ANY (CAST(:categories AS text[])))
 GROUP BY g.id, g.name, g.geom
 ORDER BY g.id
