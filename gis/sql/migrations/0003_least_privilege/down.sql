-- Migration 0003_least_privilege: downgrade. The role itself stays (cluster-wide; roles.sql owns it).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'onemap_api') THEN
        REVOKE ALL ON ALL TABLES IN SCHEMA public FROM onemap_api;
        REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM onemap_api;
        REVOKE ALL ON SCHEMA public FROM onemap_api;
        REVOKE EXECUTE ON FUNCTION ensure_gps_partitions(timestamptz, timestamptz) FROM onemap_api;
    END IF;
END $$;
GRANT EXECUTE ON FUNCTION ensure_gps_partitions(timestamptz, timestamptz), events_after_insert(),
    events_after_update(), gps_fixes_after_insert() TO PUBLIC;
