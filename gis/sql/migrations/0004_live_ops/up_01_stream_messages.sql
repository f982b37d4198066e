-- Migration 0004_live_ops: the live stream's messages persisted with ids (replay across processes).
-- Every message that onemap_notify() sends is first stored here; its id is the SSE id. Any server
-- process replays `id > Last-Event-ID` from this table, so `onemap serve --workers N` loses
-- nothing on reconnect. Rows older than the retention window are pruned by
-- prune_stream_messages() (called by each server's listener).
CREATE TABLE stream_messages (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    type        text NOT NULL,
    payload     jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stream_messages_created_at_idx ON stream_messages USING brin (created_at);

-- Replaces 0001's onemap_notify: store, then NOTIFY the stored text with its id ("stream_id").
-- Ground heights: a message with lon/lat (or a positions array of them) gets "h", the
-- ellipsoidal ground height there (dem_rows; absent when no DEM is loaded), so the viewer can
-- place billboards on the terrain.
CREATE OR REPLACE FUNCTION onemap_notify(payload jsonb) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    body text;
    sid bigint;
    h double precision;
BEGIN
    IF coalesce(current_setting('onemap.quiet', true), '') = 'on' THEN
        RETURN;
    END IF;
    IF payload ? 'lon' AND payload ? 'lat' AND NOT payload ? 'h' THEN
        h := ground_height_lonlat((payload->>'lon')::float8, (payload->>'lat')::float8, true);
        IF h IS NOT NULL THEN
            payload := payload || jsonb_build_object('h', round(h::numeric, 2));
        END IF;
    END IF;
    IF jsonb_typeof(payload->'positions') = 'array' AND EXISTS (SELECT 1 FROM dem_meta) THEN
        payload := jsonb_set(payload, '{positions}', (
            SELECT coalesce(jsonb_agg(CASE WHEN g.h IS NULL THEN p.v
                                           ELSE p.v || jsonb_build_object('h', round(g.h::numeric, 2)) END
                                      ORDER BY p.i), '[]'::jsonb)
              FROM jsonb_array_elements(payload->'positions') WITH ORDINALITY AS p(v, i)
             CROSS JOIN LATERAL (SELECT ground_height_lonlat((p.v->>'lon')::float8, (p.v->>'lat')::float8, true)
                                        AS h) g));
    END IF;
    INSERT INTO stream_messages (type, payload)
    VALUES (coalesce(payload->>'type', 'message'), payload)
    RETURNING id INTO sid;
    payload := payload || jsonb_build_object('stream_id', sid);
    body := payload::text;
    IF octet_length(body) > 7900 THEN
        -- too big for NOTIFY: listeners read the full message from stream_messages by id
        body := jsonb_build_object('type', payload->>'type', 'truncated', true, 'stream_id', sid,
                                   'count', payload->'count')::text;
    END IF;
    PERFORM pg_notify('onemap', body);
END $$;

-- Delete messages older than p_keep (at most p_limit per call); returns rows deleted.
CREATE FUNCTION prune_stream_messages(p_keep interval, p_limit integer DEFAULT 50000) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    n integer;
BEGIN
    DELETE FROM stream_messages
     WHERE id IN (SELECT id FROM stream_messages WHERE created_at < now() - p_keep
                   ORDER BY id LIMIT p_limit);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
