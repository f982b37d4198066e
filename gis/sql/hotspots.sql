-- Getis-Ord Gi* over square (:shape = 'square') or hexagonal cells of size :size (m, EPSG:4548)
-- covering the district (union of grid cells; convex hull of the events if no grid is loaded);
-- cells overlapping the district by less than 0.1 % of their area are left out.
-- Binary weights: w_ij = 1 when the cell centroids are within :distance m (i itself included).
--   Gi* = (sum_j w_ij x_j - xbar * W_i) / (S * sqrt((n * W_i - W_i^2) / (n - 1)))
-- with W_i = sum_j w_ij (= sum_j w_ij^2 for binary weights), xbar and S over all n cells.
WITH ev AS MATERIALIZED (
    SELECT e.id, e.geom_4548
      FROM events e
     WHERE e.reported_at >= :start AND e.reported_at < :end
       AND (CAST(:categories AS text[]) IS NULL OR e.category = ANY (CAST(:categories AS text[])))
),
area AS MATERIALIZED (
    SELECT COALESCE((SELECT ST_Union(geom_4548) FROM grid_cells),
                    (SELECT ST_Buffer(ST_ConvexHull(ST_Collect(geom_4548)), :size) FROM ev)) AS geom
),
cells AS MATERIALIZED (
    SELECT c.i, c.j, c.geom, ST_Centroid(c.geom) AS centre
      FROM area,
           LATERAL (SELECT * FROM ST_SquareGrid(:size, area.geom) WHERE :shape = 'square'
                    UNION ALL
                    SELECT * FROM ST_HexagonGrid(:size, area.geom) WHERE :shape <> 'square') c
     WHERE ST_Intersects(c.geom, area.geom)
       AND ST_Area(ST_Intersection(c.geom, area.geom)) >= 0.001 * ST_Area(c.geom)  -- not mere slivers
),
assigned AS (  -- squares: [i*size, (i+1)*size) as in density_square; hexagons: smallest (i, j) on edges
    SELECT ev.id, floor(ST_X(ev.geom_4548) / :size)::integer AS i, floor(ST_Y(ev.geom_4548) / :size)::integer AS j
      FROM ev WHERE :shape = 'square'
    UNION ALL
    (SELECT DISTINCT ON (ev.id) ev.id, cells.i, cells.j
       FROM ev JOIN cells ON ST_Intersects(cells.geom, ev.geom_4548)
      WHERE :shape <> 'square'
      ORDER BY ev.id, cells.i, cells.j)
),
counts AS MATERIALIZED (
    SELECT c.i, c.j, c.geom, c.centre, count(a.id)::double precision AS x
      FROM cells c LEFT JOIN assigned a ON a.i = c.i AND a.j = c.j
     GROUP BY c.i, c.j, c.geom, c.centre
),
stats AS (
    SELECT count(*)::double precision AS n, avg(x) AS xbar,
           sqrt(greatest(sum(x * x) / count(*) - avg(x) ^ 2, 0)) AS s
      FROM counts
),
nb AS (
    SELECT a.i, a.j, sum(b.x) AS wx, count(*)::double precision AS w
      FROM counts a JOIN counts b ON ST_DWithin(a.centre, b.centre, :distance)
     GROUP BY a.i, a.j
)
SELECT c.i || '_' || c.j AS cell_id, c.i, c.j, c.x::integer AS count,
       CASE WHEN st.s > 0 AND st.n > 1 AND st.n * nb.w - nb.w ^ 2 > 0
            THEN (nb.wx - st.xbar * nb.w) / (st.s * sqrt((st.n * nb.w - nb.w ^ 2) / (st.n - 1)))
       END AS gi_z,
       nb.w::integer AS neighbours,
       ST_AsGeoJSON(ST_Transform(c.geom, 4490), 7, 0)::json AS geometry
  FROM counts c JOIN nb ON nb.i = c.i AND nb.j = c.j CROSS JOIN stats st
 ORDER BY c.i, c.j
