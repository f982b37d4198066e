-- Migration 0004_live_ops: downgrade.
DROP TRIGGER gps_fixes_live_alarms ON gps_fixes;
DROP FUNCTION live_alarms_after_insert();
DROP FUNCTION live_alarm_raise(text, text, text, text, timestamptz, timestamptz, timestamptz, geometry, jsonb);
DROP TABLE alarm_live_state, alarm_rules;
ALTER TABLE gps_fixes DROP COLUMN sos;
DELETE FROM alarms WHERE kind NOT IN ('left_patrol_area', 'no_parking_dwell');
ALTER TABLE alarms DROP CONSTRAINT alarms_kind_check;
ALTER TABLE alarms ADD CONSTRAINT alarms_kind_check CHECK (kind IN ('left_patrol_area', 'no_parking_dwell'));
ALTER TABLE cameras DROP COLUMN vfov;

CREATE OR REPLACE FUNCTION onemap_notify(payload jsonb) RETURNS void
LANGUAGE plpgsql SECURITY INVOKER AS $$
DECLARE
    body text := payload::text;
BEGIN
    IF coalesce(current_setting('onemap.quiet', true), '') = 'on' THEN
        RETURN;
    END IF;
    IF octet_length(body) > 7900 THEN
        body := jsonb_build_object('type', payload->>'type', 'truncated', true,
                                   'count', payload->'count')::text;
    END IF;
    PERFORM pg_notify('onemap', body);
END $$;
ALTER FUNCTION onemap_notify(jsonb) RESET search_path;
GRANT EXECUTE ON FUNCTION onemap_notify(jsonb) TO PUBLIC;
DROP FUNCTION prune_stream_messages(interval, integer);
DROP TABLE stream_messages;
DROP FUNCTION ground_height_lonlat(double precision, double precision, boolean);
DROP FUNCTION ground_height(double precision, double precision, boolean);
DROP TABLE dem_rows, dem_meta;
