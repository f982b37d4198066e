-- One leg of a route: metres, seconds and the path (CRS84 GeoJSON) from vertex :a to vertex :b.
SELECT r.network_m, r.eta_s, ST_AsGeoJSON(ST_Transform(r.geom_4548, 4490), 7)::json AS geometry
  FROM road_route_costs(ARRAY[CAST(:a AS bigint)], CAST(:b AS bigint), 'walk') r
