-- Migration 0004_live_ops: what onemap_api may do with the new objects.
GRANT SELECT ON stream_messages, dem_meta, dem_rows, alarm_rules, alarm_live_state TO onemap_api;
GRANT UPDATE ON alarm_rules TO onemap_api;

REVOKE EXECUTE ON FUNCTION onemap_notify(jsonb), prune_stream_messages(interval, integer),
    live_alarm_raise(text, text, text, text, timestamptz, timestamptz, timestamptz, geometry, jsonb),
    live_alarms_after_insert() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION onemap_notify(jsonb), prune_stream_messages(interval, integer) TO onemap_api, onemap_writer;
