-- Migration 0007_access: what the API (onemap_api) may read and run. The two SECURITY DEFINER
-- functions read restricted.persons and return suppressed aggregates only.
GRANT SELECT ON facility_kind, facilities, building_road_vertex TO onemap_api;
GRANT EXECUTE ON FUNCTION access_speeds(), access_vertex_m(text), access_buildings(text),
    access_publish(integer, integer[]) TO onemap_api;
REVOKE EXECUTE ON FUNCTION access_by_community(text, double precision),
    access_sites(text, double precision, integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION access_by_community(text, double precision),
    access_sites(text, double precision, integer, integer) TO onemap_api;
