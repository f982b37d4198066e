-- Migration 0005_dispatch: the worker's steps after a dispatch as lifecycle statuses.
--   dispatched -(accept)-> en_route -(arrive)-> on_scene -(resolve)-> handled
-- (dispatched -> handled stays legal: an operator may record the outcome directly). Each step
-- is a status change through event_set_status(), so it is checked against event_transition and
-- recorded in the append-only history like every other step.
ALTER TABLE events ADD COLUMN en_route_at timestamptz, ADD COLUMN on_scene_at timestamptz;
ALTER TABLE events DROP CONSTRAINT events_status_check;
ALTER TABLE events ADD CONSTRAINT events_status_check CHECK (status IN
    ('reported', 'accepted', 'dispatched', 'en_route', 'on_scene', 'handled', 'verified', 'closed', 'rejected'));
ALTER TABLE events ADD CONSTRAINT events_dispatch_time_ck CHECK (
    (status <> 'en_route' OR en_route_at IS NOT NULL) AND
    (status <> 'on_scene' OR on_scene_at IS NOT NULL));
INSERT INTO event_transition (from_status, to_status, action) VALUES
    ('dispatched', 'en_route', 'accept'), ('en_route', 'on_scene', 'arrive'), ('on_scene', 'handled', 'resolve');

-- Stamps en_route_at / on_scene_at (after events_check_transition: triggers fire in name order)
-- and clears them when a closed or verified event is reopened.
CREATE FUNCTION events_dispatch_steps() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    at_ts timestamptz := COALESCE(NULLIF(current_setting('onemap.transition_at', true), '')::timestamptz,
                                  now());
BEGIN
    IF NEW.status = 'dispatched' AND OLD.status IN ('verified', 'closed') THEN
        NEW.en_route_at := NULL;
        NEW.on_scene_at := NULL;
    ELSIF NEW.status = 'en_route' AND NEW.en_route_at IS NOT DISTINCT FROM OLD.en_route_at THEN
        NEW.en_route_at := at_ts;
    ELSIF NEW.status = 'on_scene' AND NEW.on_scene_at IS NOT DISTINCT FROM OLD.on_scene_at THEN
        NEW.on_scene_at := at_ts;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER events_dispatch_steps BEFORE UPDATE OF status ON events FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION events_dispatch_steps();

-- History and NOTIFY know the two new steps' times (bodies of 0001_overlays with them added).
CREATE OR REPLACE FUNCTION events_after_insert() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    n bigint;
    ev events;
BEGIN
    INSERT INTO event_status_history (event_id, from_status, to_status, at, actor, note)
    SELECT s.id, lag(s.st) OVER (PARTITION BY s.id ORDER BY s.ord), s.st, s.at,
           NULLIF(current_setting('onemap.actor', true), ''),
           NULLIF(current_setting('onemap.note', true), '')
      FROM (SELECT e.id, v.ord, v.st, v.at
              FROM new_events e
              CROSS JOIN LATERAL (VALUES
                    (1, 'reported', e.reported_at), (2, 'accepted', e.accepted_at),
                    (3, 'dispatched', e.dispatched_at), (4, 'en_route', e.en_route_at),
                    (5, 'on_scene', e.on_scene_at), (6, 'handled', e.handled_at),
                    (7, 'verified', e.verified_at), (8, 'closed', e.closed_at),
                    (9, 'rejected', e.rejected_at)) AS v(ord, st, at)
             WHERE v.at IS NOT NULL) s;
    SELECT count(*) INTO n FROM new_events;
    IF n <= 20 THEN
        FOR ev IN SELECT * FROM new_events ORDER BY id LOOP
            PERFORM onemap_notify(event_payload(ev, 'event'));
        END LOOP;
    ELSE
        PERFORM onemap_notify(jsonb_build_object('type', 'event', 'bulk', true, 'count', n,
            'reported_from', (SELECT min(reported_at) FROM new_events),
            'reported_to', (SELECT max(reported_at) FROM new_events)));
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION events_after_update() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    changes jsonb;
    n integer;
    c jsonb;
BEGIN
    SELECT COALESCE(jsonb_agg(jsonb_build_object(
               'type', 'event_status', 'id', n.id, 'from', o.status, 'to', n.status,
               'at', CASE n.status WHEN 'accepted' THEN n.accepted_at WHEN 'dispatched' THEN n.dispatched_at
                                   WHEN 'en_route' THEN n.en_route_at WHEN 'on_scene' THEN n.on_scene_at
                                   WHEN 'handled' THEN n.handled_at WHEN 'verified' THEN n.verified_at
                                   WHEN 'closed' THEN n.closed_at WHEN 'rejected' THEN n.rejected_at
                                   ELSE n.reported_at END,
               'worker_id', n.worker_id,
               'actor', NULLIF(current_setting('onemap.actor', true), '')) ORDER BY n.id), '[]')
      INTO changes
      FROM new_events n JOIN old_events o ON o.id = n.id
     WHERE o.status IS DISTINCT FROM n.status;
    n := jsonb_array_length(changes);
    IF n = 0 THEN
        RETURN NULL;
    END IF;
    INSERT INTO event_status_history (event_id, from_status, to_status, at, actor, note)
    SELECT x->>'id', x->>'from', x->>'to', (x->>'at')::timestamptz, x->>'actor',
           NULLIF(current_setting('onemap.note', true), '')
      FROM jsonb_array_elements(changes) x;
    IF n <= 20 THEN
        FOR c IN SELECT * FROM jsonb_array_elements(changes) LOOP
            PERFORM onemap_notify(c);
        END LOOP;
    ELSE
        PERFORM onemap_notify(jsonb_build_object('type', 'event_status', 'bulk', true, 'count', n));
    END IF;
    RETURN NULL;
END $$;
