-- Migration 0003_least_privilege: the grants of onemap_api (what `onemap serve` connects as).
-- Runs as the schema owner (onemap_owner). The login roles come from gis/sql/roles/roles.sql
-- (`onemap db up`, or `onemap db roles` for an external PostgreSQL); when onemap_api is missing
-- and this session may create roles it is created here without LOGIN (set one with `db roles`).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'onemap_api') THEN
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_user AND (rolsuper OR rolcreaterole)) THEN
            RAISE EXCEPTION 'role onemap_api does not exist'
                USING HINT = 'create the roles first: `onemap db roles --apply` (or run gis/sql/roles/roles.sql as a superuser)';
        END IF;
        CREATE ROLE onemap_api NOLOGIN NOINHERIT;
    END IF;
END $$;

-- Nothing through PUBLIC: the schemas' objects are granted to named roles only.
REVOKE ALL ON SCHEMA restricted FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA restricted FROM onemap_api;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO onemap_api;

-- Reads: the layers, the suppressed population views, the accounts the auth code looks up.
GRANT SELECT ON communities, grid_cells, buildings, roads, workers, devices, cameras, checkpoints,
    geofences, event_category, event_transition, events, event_status_history, gps_fixes,
    worker_positions, shift_tracks, checkins, alarms, alarm_watermark,
    population_by_building, population_by_grid, population_by_community,
    api_users, audit_log TO onemap_api;

-- Writes: events and their transitions (history rows come from SECURITY DEFINER triggers),
-- GPS fixes (positions by trigger, partitions by ensure_gps_partitions), alarms, camera status,
-- accounts (tokens, last use, revocation) and the append-only audit log. No DELETE, no TRUNCATE.
GRANT INSERT, UPDATE ON events TO onemap_api;
GRANT INSERT ON gps_fixes TO onemap_api;
GRANT INSERT ON alarms TO onemap_api;
GRANT UPDATE (t_end, details, acknowledged_at) ON alarms TO onemap_api;
GRANT INSERT, UPDATE ON alarm_watermark TO onemap_api;
GRANT UPDATE (status, status_changed_at) ON cameras TO onemap_api;
GRANT INSERT, UPDATE ON api_users TO onemap_api;
GRANT INSERT ON audit_log TO onemap_api;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO onemap_api;

-- Person-level reads: only as onemap_privileged (SET LOCAL ROLE inside a privileged request).
GRANT USAGE ON SCHEMA restricted TO onemap_privileged;
GRANT SELECT ON ALL TABLES IN SCHEMA restricted TO onemap_privileged;

-- Functions running with the owner's rights: only for onemap's roles, not for PUBLIC.
REVOKE EXECUTE ON FUNCTION ensure_gps_partitions(timestamptz, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ensure_gps_partitions(timestamptz, timestamptz) TO onemap_api, onemap_writer;
REVOKE EXECUTE ON FUNCTION events_after_insert(), events_after_update(), gps_fixes_after_insert() FROM PUBLIC;
