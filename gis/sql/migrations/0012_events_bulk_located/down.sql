-- Migration 0012_events_bulk_located, down: events_before_insert as 0001_overlays created it.
CREATE OR REPLACE TRIGGER events_before_insert BEFORE INSERT ON events FOR EACH ROW
    WHEN (NEW.deadline_at IS NULL
          OR (NEW.building_id IS NULL AND NEW.grid_id IS NULL AND NEW.community_id IS NULL))
    EXECUTE FUNCTION events_before_insert();
