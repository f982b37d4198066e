-- Migration 0001_overlays: database roles and grants.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'onemap_reader') THEN
        CREATE ROLE onemap_reader NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'onemap_writer') THEN
        CREATE ROLE onemap_writer NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'onemap_privileged') THEN
        CREATE ROLE onemap_privileged NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'onemap_admin') THEN
        CREATE ROLE onemap_admin NOLOGIN;
    END IF;
END $$;
GRANT onemap_reader TO onemap_writer;
GRANT onemap_reader TO onemap_privileged;
GRANT onemap_writer, onemap_privileged TO onemap_admin;
REVOKE ALL ON SCHEMA restricted FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO onemap_reader;
GRANT USAGE ON SCHEMA restricted TO onemap_privileged;

GRANT SELECT ON communities, grid_cells, buildings, roads, workers, devices, cameras, checkpoints, geofences, event_category, event_transition, events, event_status_history, gps_fixes, worker_positions, shift_tracks, checkins, alarms, alarm_watermark, population_by_building, population_by_grid, population_by_community TO onemap_reader;
GRANT INSERT, UPDATE ON events TO onemap_writer;
GRANT INSERT ON gps_fixes, alarms TO onemap_writer;
GRANT UPDATE (t_end, details, acknowledged_at) ON alarms TO onemap_writer;
GRANT INSERT, UPDATE ON alarm_watermark TO onemap_writer;
GRANT UPDATE (status, status_changed_at) ON cameras TO onemap_writer;
GRANT SELECT ON ALL TABLES IN SCHEMA restricted TO onemap_privileged;
