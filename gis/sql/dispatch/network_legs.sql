-- Road-network legs from each candidate (:cands, JSON [{id, lon, lat, mode}], EPSG:4490) to
-- (:lon, :lat): pgr_dijkstra (road_route_costs) from the graph vertex nearest the candidate to
-- the vertex nearest the target. network_m / eta_s are along the graph (vertex to vertex);
-- access_m is the straight part off the graph at both ends; route is a GeoJSON LineString
-- (CRS84) from the candidate through the path to the target. No row of road_route_costs
-- (unreachable, or no graph): network_m, eta_s and route are NULL.
WITH target AS (
    SELECT ST_Transform(ST_SetSRID(ST_MakePoint(:lon, :lat), 4490), 4548) AS g
), tv AS (
    SELECT v.id, v.geom_4548 FROM road_vertices v, target t ORDER BY v.geom_4548 <-> t.g LIMIT 1
), c AS (
    SELECT x.id, x.mode, ST_Transform(ST_SetSRID(ST_MakePoint(x.lon, x.lat), 4490), 4548) AS g
      FROM jsonb_to_recordset(CAST(:cands AS jsonb)) AS x(id text, lon double precision,
                                                           lat double precision, mode text)
), cv AS (
    SELECT c.id, c.mode, c.g, v.id AS vid, v.geom_4548 AS vg
      FROM c CROSS JOIN LATERAL (SELECT id, geom_4548 FROM road_vertices
                                  ORDER BY geom_4548 <-> c.g LIMIT 1) v
), r AS (
    SELECT m.mode, rc.*
      FROM (SELECT mode, array_agg(DISTINCT vid) AS vids FROM cv GROUP BY mode) m
     CROSS JOIN LATERAL road_route_costs(m.vids, (SELECT id FROM tv), m.mode) rc
)
SELECT cv.id, cv.vid AS from_vertex, tv.id AS to_vertex, r.network_m, r.eta_s,
       ST_Distance(cv.g, cv.vg) + ST_Distance(tv.geom_4548, t.g) AS access_m,
       CASE WHEN r.start_vid IS NOT NULL THEN
           ST_AsGeoJSON(ST_Transform(ST_RemoveRepeatedPoints(
               ST_MakeLine(ARRAY[cv.g, COALESCE(r.geom_4548, cv.vg), t.g])), 4490), 7)
       END AS route
  FROM cv CROSS JOIN tv CROSS JOIN target t
  LEFT JOIN r ON r.mode = cv.mode AND r.start_vid = cv.vid
