-- Migration 0009_civil: grants. onemap_api reads the public tables and writes care visits only
-- through care_visit_record(); the person-level tables are onemap_privileged's.
GRANT SELECT ON event_category_group, surveys, camera_viewsheds TO onemap_api, onemap_reader;
GRANT SELECT ON restricted.care_category, restricted.care_households, restricted.care_visits,
    restricted.care_status TO onemap_privileged;
REVOKE EXECUTE ON FUNCTION care_visit_record(text, text, text, timestamptz, text, text),
    care_by_community(timestamptz), camera_viewsheds_rebuild(text[]), cameras_viewshed_trigger() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION care_visit_record(text, text, text, timestamptz, text, text),
    care_by_community(timestamptz) TO onemap_api;
