-- Migration 0002_events_time_cover: downgrade to the plain reported_at index.
DROP INDEX IF EXISTS events_reported_at_cover_idx;
CREATE INDEX events_reported_at_idx ON events (reported_at);
