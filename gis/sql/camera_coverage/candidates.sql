-- Candidate camera sites: points every :spacing m along the main roads (:classes), outside
-- buildings, each with the viewshed a camera of the given model would have there (EPSG:4548 WKB).
WITH lines AS (
    SELECT r.id AS road_id, d.geom AS g
      FROM roads r CROSS JOIN LATERAL ST_Dump(r.geom_4548) d
     WHERE r.class = ANY (CAST(:classes AS text[])) AND ST_Length(d.geom) > 0
),
pts AS (
    SELECT l.road_id, (ST_Dump(ST_LineInterpolatePoints(l.g, least(1.0, CAST(:spacing AS double precision) / ST_Length(l.g)), true))).geom AS p
      FROM lines l
),
cand AS (
    SELECT DISTINCT ON (ST_SnapToGrid(p, 1.0)) road_id, p
      FROM pts
     WHERE NOT EXISTS (SELECT 1 FROM buildings b WHERE ST_Intersects(b.geom_4548, pts.p))
     ORDER BY ST_SnapToGrid(p, 1.0), road_id
)
SELECT row_number() OVER (ORDER BY cand.road_id, ST_X(cand.p), ST_Y(cand.p)) AS n, cand.road_id,
       ST_X(ST_Transform(cand.p, 4490)) AS lon, ST_Y(ST_Transform(cand.p, 4490)) AS lat,
       ST_AsBinary(camera_viewshed_geom(ST_X(cand.p), ST_Y(cand.p), :mount, :heading, :hfov, :pitch, :vfov, :range))
           AS wkb
  FROM cand
 ORDER BY n
