-- Migration 0005_dispatch: what the API (onemap_api) may do with the dispatch tables.
GRANT SELECT ON road_speed, road_vertices, road_edges, duty_roster, priority_deadline TO onemap_api;
GRANT UPDATE (minutes, updated_at, updated_by) ON priority_deadline TO onemap_api;
GRANT EXECUTE ON FUNCTION road_route_costs(bigint[], bigint, text), on_duty(text, timestamptz),
    escalate_missed_deadlines(timestamptz, double precision) TO onemap_api;
REVOKE EXECUTE ON FUNCTION road_graph_rebuild(double precision) FROM PUBLIC;
