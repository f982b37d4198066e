-- Migration 0001_overlays: onemap_notify(): NOTIFY messages for the live stream.
-- Every live message goes through here: channel 'onemap', JSON text < 8000 bytes.
-- SET onemap.quiet = 'on' (loaders do) suppresses messages for bulk historical loads.
CREATE FUNCTION onemap_notify(payload jsonb) RETURNS void LANGUAGE plpgsql AS $$
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

CREATE FUNCTION event_payload(e events, kind text) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'type', kind, 'id', e.id, 'category', e.category, 'priority', e.priority,
        'status', e.status, 'source', e.source, 'worker_id', e.worker_id,
        'grid_id', e.grid_id, 'building_id', e.building_id,
        'reported_at', e.reported_at, 'deadline_at', e.deadline_at,
        'lon', round(ST_X(e.geom)::numeric, 7), 'lat', round(ST_Y(e.geom)::numeric, 7))
$$;
