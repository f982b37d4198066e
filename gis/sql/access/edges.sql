-- Road edges with the walking metres from the nearest facility of :kind at each end (isochrones:
-- a point along the edge is reached from the nearer end). Edges unreachable from both ends: NULLs.
WITH v AS MATERIALIZED (SELECT vid, walk_m FROM access_vertex_m(:kind))
SELECT e.id, e.length_m, vs.walk_m AS source_m, vt.walk_m AS target_m,
       ST_AsGeoJSON(ST_Transform(e.geom_4548, 4490), 7) AS geometry
  FROM road_edges e
  LEFT JOIN v vs ON vs.vid = e.source
  LEFT JOIN v vt ON vt.vid = e.target
 ORDER BY e.id
