-- Migration 0001_overlays: event triggers and event_set_status() (lifecycle enforced in the database).
CREATE FUNCTION events_before_insert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    loc record;
BEGIN
    IF NEW.deadline_at IS NULL THEN
        SELECT NEW.reported_at + make_interval(secs => c.deadline_hours * 3600)
          INTO NEW.deadline_at FROM event_category c WHERE c.code = NEW.category;
    END IF;
    IF NEW.building_id IS NULL AND NEW.grid_id IS NULL AND NEW.community_id IS NULL THEN
        SELECT * INTO loc FROM locate_point(ST_Transform(NEW.geom, 4548));
        NEW.building_id := loc.building_id;
        NEW.grid_id := loc.grid_id;
        NEW.community_id := loc.community_id;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER events_before_insert BEFORE INSERT ON events FOR EACH ROW
    WHEN (NEW.deadline_at IS NULL
          OR (NEW.building_id IS NULL AND NEW.grid_id IS NULL AND NEW.community_id IS NULL))
    EXECUTE FUNCTION events_before_insert();

CREATE FUNCTION events_relocate() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    loc record;
BEGIN
    SELECT * INTO loc FROM locate_point(ST_Transform(NEW.geom, 4548));
    NEW.building_id := loc.building_id;
    NEW.grid_id := loc.grid_id;
    NEW.community_id := loc.community_id;
    RETURN NEW;
END $$;
CREATE TRIGGER events_relocate BEFORE UPDATE OF geom ON events FOR EACH ROW
    WHEN (OLD.geom IS DISTINCT FROM NEW.geom) EXECUTE FUNCTION events_relocate();

-- Status changes: legal per event_transition, else SQLSTATE OM409 with the allowed targets.
-- The time of the step is onemap.transition_at (if set) or now(), unless the UPDATE sets it.
CREATE FUNCTION events_check_transition() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    allowed text[];
    at_ts timestamptz := COALESCE(NULLIF(current_setting('onemap.transition_at', true), '')::timestamptz,
                                  now());
BEGIN
    IF NOT EXISTS (SELECT 1 FROM event_transition
                    WHERE from_status = OLD.status AND to_status = NEW.status) THEN
        SELECT COALESCE(array_agg(to_status ORDER BY to_status), '{}') INTO allowed
          FROM event_transition WHERE from_status = OLD.status;
        RAISE EXCEPTION 'illegal event status transition % -> % for event %; allowed from %: %',
                OLD.status, NEW.status, OLD.id, OLD.status,
                CASE WHEN cardinality(allowed) = 0 THEN 'none (terminal)'
                     ELSE array_to_string(allowed, ', ') END
            USING ERRCODE = 'OM409',
                  DETAIL = jsonb_build_object('event_id', OLD.id, 'from', OLD.status,
                                              'to', NEW.status, 'allowed', to_jsonb(allowed))::text,
                  HINT = 'allowed transitions are listed in table event_transition';
    END IF;
    IF NEW.status = 'dispatched' AND OLD.status IN ('verified', 'closed') THEN  -- reopen
        NEW.handled_at := NULL;
        NEW.verified_at := NULL;
        NEW.closed_at := NULL;
        NEW.reopened_count := OLD.reopened_count + 1;
        IF NEW.dispatched_at IS NOT DISTINCT FROM OLD.dispatched_at THEN
            NEW.dispatched_at := at_ts;
        END IF;
    END IF;
    CASE NEW.status
        WHEN 'accepted' THEN
            IF NEW.accepted_at IS NOT DISTINCT FROM OLD.accepted_at THEN
                NEW.accepted_at := at_ts;
            END IF;
        WHEN 'dispatched' THEN
            IF NEW.dispatched_at IS NOT DISTINCT FROM OLD.dispatched_at THEN
                NEW.dispatched_at := at_ts;
            END IF;
        WHEN 'handled' THEN
            IF NEW.handled_at IS NOT DISTINCT FROM OLD.handled_at THEN
                NEW.handled_at := at_ts;
            END IF;
        WHEN 'verified' THEN
            IF NEW.verified_at IS NOT DISTINCT FROM OLD.verified_at THEN
                NEW.verified_at := at_ts;
            END IF;
        WHEN 'closed' THEN
            IF NEW.closed_at IS NOT DISTINCT FROM OLD.closed_at THEN
                NEW.closed_at := at_ts;
            END IF;
        WHEN 'rejected' THEN
            IF NEW.rejected_at IS NOT DISTINCT FROM OLD.rejected_at THEN
                NEW.rejected_at := at_ts;
            END IF;
        ELSE NULL;
    END CASE;
    NEW.updated_at := now();
    RETURN NEW;
END $$;
CREATE TRIGGER events_check_transition BEFORE UPDATE OF status ON events FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION events_check_transition();

-- History + NOTIFY for inserted events (set-based: one statement per COPY/INSERT batch).
CREATE FUNCTION events_after_insert() RETURNS trigger LANGUAGE plpgsql
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
                    (3, 'dispatched', e.dispatched_at), (4, 'handled', e.handled_at),
                    (5, 'verified', e.verified_at), (6, 'closed', e.closed_at),
                    (7, 'rejected', e.rejected_at)) AS v(ord, st, at)
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
CREATE TRIGGER events_after_insert AFTER INSERT ON events
    REFERENCING NEW TABLE AS new_events FOR EACH STATEMENT EXECUTE FUNCTION events_after_insert();

CREATE FUNCTION events_after_update() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    changes jsonb;
    n integer;
    c jsonb;
BEGIN
    SELECT COALESCE(jsonb_agg(jsonb_build_object(
               'type', 'event_status', 'id', n.id, 'from', o.status, 'to', n.status,
               'at', CASE n.status WHEN 'accepted' THEN n.accepted_at WHEN 'dispatched' THEN n.dispatched_at
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
CREATE TRIGGER events_after_update AFTER UPDATE ON events
    REFERENCING OLD TABLE AS old_events NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION events_after_update();

-- Change a status with actor/note recorded in the history (the API's single entry point).
CREATE FUNCTION event_set_status(p_event_id text, p_status text, p_actor text DEFAULT NULL,
                                 p_note text DEFAULT NULL, p_at timestamptz DEFAULT NULL)
RETURNS events LANGUAGE plpgsql AS $$
DECLARE
    result events;
BEGIN
    PERFORM set_config('onemap.actor', COALESCE(p_actor, ''), true);
    PERFORM set_config('onemap.note', COALESCE(p_note, ''), true);
    PERFORM set_config('onemap.transition_at', COALESCE(p_at::text, ''), true);
    UPDATE events SET status = p_status WHERE id = p_event_id RETURNING * INTO result;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'event % does not exist', p_event_id USING ERRCODE = 'OM404';
    END IF;
    PERFORM set_config('onemap.actor', '', true);
    PERFORM set_config('onemap.note', '', true);
    PERFORM set_config('onemap.transition_at', '', true);
    RETURN result;
END $$;

CREATE FUNCTION event_status_history_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'event_status_history is append-only: % refused', TG_OP
        USING ERRCODE = 'OM405', HINT = 'record a new transition instead';
END $$;
CREATE TRIGGER event_status_history_append_only BEFORE UPDATE OR DELETE ON event_status_history
    FOR EACH ROW EXECUTE FUNCTION event_status_history_append_only();
