-- Migration 0012_events_bulk_located: events_before_insert skips the location lookup for rows a
-- bulk loader has already located (transaction setting onemap.located = 'on', set by
-- gis/loaders/events.py after its set-based locate_point join). Before, every loaded event
-- outside all buildings, grid cells and communities (NULL location by right) ran the trigger and
-- locate_point() again, only to get NULLs back: ~160 us per such row, 40 % of a 1 M-event load's
-- INSERT on the sample district. Inserts without the setting (the API) behave as before.
CREATE OR REPLACE TRIGGER events_before_insert BEFORE INSERT ON events FOR EACH ROW
    WHEN (NEW.deadline_at IS NULL
          OR (NEW.building_id IS NULL AND NEW.grid_id IS NULL AND NEW.community_id IS NULL
              AND current_setting('onemap.located', true) IS DISTINCT FROM 'on'))
    EXECUTE FUNCTION events_before_insert();
