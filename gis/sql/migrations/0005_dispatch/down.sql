-- Migration 0005_dispatch, down: events in the new statuses go back to 'dispatched'.
DROP FUNCTION IF EXISTS escalate_missed_deadlines(timestamptz, double precision);
DELETE FROM alarms WHERE kind = 'deadline_missed';
DROP INDEX IF EXISTS alarms_deadline_event_uq;
ALTER TABLE alarms DROP CONSTRAINT alarms_episode_uq;
ALTER TABLE alarms ADD CONSTRAINT alarms_episode_uq UNIQUE NULLS NOT DISTINCT (kind, worker_id, geofence_id, t_start);
DO $$
DECLARE
    def text;
    kinds text[];
BEGIN
    SELECT pg_get_constraintdef(oid) INTO def FROM pg_constraint
     WHERE conrelid = 'alarms'::regclass AND conname = 'alarms_kind_check';
    SELECT array_agg(DISTINCT m[1] ORDER BY m[1]) INTO kinds
      FROM regexp_matches(COALESCE(def, ''), '''([a-z_]+)''', 'g') AS m
     WHERE m[1] <> 'deadline_missed';
    EXECUTE 'ALTER TABLE alarms DROP CONSTRAINT IF EXISTS alarms_kind_check';
    EXECUTE format('ALTER TABLE alarms ADD CONSTRAINT alarms_kind_check CHECK (kind = ANY (%L::text[]))', kinds);
END $$;
ALTER TABLE alarms DROP COLUMN event_id;
DROP FUNCTION IF EXISTS on_duty(text, timestamptz);
DROP TABLE IF EXISTS duty_roster;
DROP INDEX IF EXISTS events_queue_idx;
DROP TRIGGER IF EXISTS events_before_deadline ON events;
DROP FUNCTION IF EXISTS events_before_deadline();
DROP TABLE IF EXISTS priority_deadline;

DROP TRIGGER IF EXISTS events_dispatch_steps ON events;
DROP FUNCTION IF EXISTS events_dispatch_steps();
ALTER TABLE events DISABLE TRIGGER USER;
UPDATE events SET status = 'dispatched' WHERE status IN ('en_route', 'on_scene');
ALTER TABLE events ENABLE TRIGGER USER;
DELETE FROM event_transition WHERE to_status IN ('en_route', 'on_scene') OR from_status IN ('en_route', 'on_scene');
ALTER TABLE events DROP CONSTRAINT events_dispatch_time_ck;
ALTER TABLE events DROP CONSTRAINT events_status_check;
ALTER TABLE events ADD CONSTRAINT events_status_check CHECK (status IN
    ('reported', 'accepted', 'dispatched', 'handled', 'verified', 'closed', 'rejected'));
ALTER TABLE events DROP COLUMN en_route_at, DROP COLUMN on_scene_at;

-- the 0001_overlays bodies of the history/NOTIFY triggers
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

DROP FUNCTION IF EXISTS road_route_costs(bigint[], bigint, text);
DROP FUNCTION IF EXISTS road_graph_rebuild(double precision);
DROP TABLE IF EXISTS road_edges;
DROP TABLE IF EXISTS road_vertices;
DROP TABLE IF EXISTS road_speed;
-- the pgrouting extension stays (created by the superuser, like postgis)
