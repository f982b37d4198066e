-- Migration 0002_events_time_cover: covering time index on events (see the revision's docstring).
DROP INDEX IF EXISTS events_reported_at_idx;
CREATE INDEX events_reported_at_cover_idx ON events (reported_at) INCLUDE (category, grid_id, id, geom_4548);
