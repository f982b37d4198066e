"""Operational overlay layers: reference layers, events, population, cameras, GPS, alarms.

Hand-written to match ``gis/models.py`` (a test compares both). Design notes: docs/postgis.md.

Revision ID: 0001_overlays
Revises: 0000_base
"""

from __future__ import annotations

from alembic import op

revision = "0001_overlays"
down_revision = "0000_base"
branch_labels = None
depends_on = None

# Every layer stores geom in EPSG:4490 and a stored generated copy in EPSG:4548 for metric work.
_G4548 = "GENERATED ALWAYS AS (ST_Transform(geom, 4548)) STORED"

REFERENCE_TABLES = f"""
CREATE TABLE communities (
    id          text PRIMARY KEY CHECK (id <> ''),
    name        text NOT NULL,
    attrs       jsonb NOT NULL DEFAULT '{{}}',
    geom        geometry(MultiPolygon, 4490) NOT NULL,
    geom_4548   geometry(MultiPolygon, 4548) {_G4548}
);
CREATE INDEX communities_geom_gix ON communities USING gist (geom);
CREATE INDEX communities_geom_4548_gix ON communities USING gist (geom_4548);

CREATE TABLE grid_cells (
    id            text PRIMARY KEY CHECK (id <> ''),
    name          text NOT NULL,
    community_id  text REFERENCES communities (id) ON DELETE SET NULL,
    staff_id      text,
    staff_name    text,
    staff_phone   text,
    attrs         jsonb NOT NULL DEFAULT '{{}}',
    geom          geometry(MultiPolygon, 4490) NOT NULL,
    geom_4548     geometry(MultiPolygon, 4548) {_G4548}
);
CREATE INDEX grid_cells_geom_gix ON grid_cells USING gist (geom);
CREATE INDEX grid_cells_geom_4548_gix ON grid_cells USING gist (geom_4548);
CREATE INDEX grid_cells_community_id_idx ON grid_cells (community_id);

CREATE TABLE buildings (
    id                  text PRIMARY KEY CHECK (id <> ''),
    name                text,
    floors              integer CHECK (floors BETWEEN 0 AND 120),
    height              double precision CHECK (height > 0 AND height <= 500),
    use                 text,
    roof_type           text,
    community_declared  text,
    compound            text,
    community_id        text REFERENCES communities (id) ON DELETE SET NULL,
    grid_id             text REFERENCES grid_cells (id) ON DELETE SET NULL,
    roof_height_m       double precision GENERATED ALWAYS AS (COALESCE(height, floors * 3.0, 3.0)) STORED,
    attrs               jsonb NOT NULL DEFAULT '{{}}',
    geom                geometry(MultiPolygon, 4490) NOT NULL,
    geom_4548           geometry(MultiPolygon, 4548) {_G4548}
);
CREATE INDEX buildings_geom_gix ON buildings USING gist (geom);
CREATE INDEX buildings_geom_4548_gix ON buildings USING gist (geom_4548);
CREATE INDEX buildings_grid_id_idx ON buildings (grid_id);
CREATE INDEX buildings_community_id_idx ON buildings (community_id);

CREATE TABLE roads (
    id           text PRIMARY KEY CHECK (id <> ''),
    name         text,
    class        text,
    width        double precision CHECK (width >= 0),
    lanes        integer CHECK (lanes >= 0),
    bridge       boolean NOT NULL DEFAULT false,
    deck_height  double precision,
    attrs        jsonb NOT NULL DEFAULT '{{}}',
    geom         geometry(MultiLineString, 4490) NOT NULL,
    geom_4548    geometry(MultiLineString, 4548) {_G4548}
);
CREATE INDEX roads_geom_gix ON roads USING gist (geom);
CREATE INDEX roads_geom_4548_gix ON roads USING gist (geom_4548);

CREATE TABLE workers (
    id       text PRIMARY KEY CHECK (id <> ''),
    name     text NOT NULL,
    phone    text,
    kind     text NOT NULL CHECK (kind IN ('grid_worker', 'vehicle')),
    grid_id  text REFERENCES grid_cells (id) ON DELETE SET NULL,
    active   boolean NOT NULL DEFAULT true,
    attrs    jsonb NOT NULL DEFAULT '{{}}'
);
CREATE INDEX workers_grid_id_idx ON workers (grid_id);

CREATE TABLE devices (
    id         text PRIMARY KEY CHECK (id <> ''),
    worker_id  text REFERENCES workers (id) ON DELETE SET NULL,
    kind       text NOT NULL DEFAULT 'gps',
    active     boolean NOT NULL DEFAULT true
);
CREATE INDEX devices_worker_id_idx ON devices (worker_id);

CREATE TABLE cameras (
    id                 text PRIMARY KEY CHECK (id <> ''),
    name               text,
    kind               text NOT NULL CHECK (kind IN ('street', 'high_altitude')),
    mount_height       double precision NOT NULL CHECK (mount_height >= 0),
    heading            double precision NOT NULL CHECK (heading >= 0 AND heading < 360),
    pitch              double precision CHECK (pitch BETWEEN -90 AND 90),
    hfov               double precision NOT NULL CHECK (hfov > 0 AND hfov <= 360),
    range_m            double precision NOT NULL CHECK (range_m > 0),
    stream_url         text,
    status             text NOT NULL DEFAULT 'online' CHECK (status IN ('online', 'offline')),
    status_changed_at  timestamptz,
    attrs              jsonb NOT NULL DEFAULT '{{}}',
    geom               geometry(Point, 4490) NOT NULL,
    geom_4548          geometry(Point, 4548) {_G4548}
);
CREATE INDEX cameras_geom_gix ON cameras USING gist (geom);
CREATE INDEX cameras_geom_4548_gix ON cameras USING gist (geom_4548);

CREATE TABLE checkpoints (
    id         text PRIMARY KEY CHECK (id <> ''),
    name       text,
    grid_id    text REFERENCES grid_cells (id) ON DELETE SET NULL,
    radius_m   double precision NOT NULL CHECK (radius_m > 0),
    geom       geometry(Point, 4490) NOT NULL,
    geom_4548  geometry(Point, 4548) {_G4548}
);
CREATE INDEX checkpoints_geom_gix ON checkpoints USING gist (geom);
CREATE INDEX checkpoints_geom_4548_gix ON checkpoints USING gist (geom_4548);
CREATE INDEX checkpoints_grid_id_idx ON checkpoints (grid_id);

CREATE TABLE geofences (
    id             text PRIMARY KEY CHECK (id <> ''),
    name           text,
    kind           text NOT NULL CHECK (kind IN ('no_parking', 'patrol_area')),
    worker_id      text REFERENCES workers (id) ON DELETE SET NULL,
    max_dwell_min  double precision CHECK (max_dwell_min > 0),
    geom           geometry(MultiPolygon, 4490) NOT NULL,
    geom_4548      geometry(MultiPolygon, 4548) {_G4548}
);
CREATE INDEX geofences_geom_gix ON geofences USING gist (geom);
CREATE INDEX geofences_geom_4548_gix ON geofences USING gist (geom_4548);
CREATE INDEX geofences_worker_id_idx ON geofences (worker_id);
"""

EVENT_TABLES = f"""
CREATE TABLE event_category (
    code            text PRIMARY KEY,
    label_zh        text NOT NULL,
    deadline_hours  double precision NOT NULL CHECK (deadline_hours > 0)
);
INSERT INTO event_category (code, label_zh, deadline_hours) VALUES
    ('city_appearance', '市容环境', 48),
    ('street_order', '街面秩序', 24),
    ('sanitation', '环境卫生', 24),
    ('municipal_facilities', '市政设施', 72),
    ('greening', '园林绿化', 72),
    ('illegal_construction', '违法建设', 120),
    ('safety_hazard', '安全隐患', 12),
    ('dispute', '矛盾纠纷', 72);

CREATE TABLE event_transition (
    from_status  text NOT NULL,
    to_status    text NOT NULL,
    action       text NOT NULL,
    PRIMARY KEY (from_status, to_status)
);
INSERT INTO event_transition (from_status, to_status, action) VALUES
    ('reported', 'accepted', 'accept'), ('reported', 'rejected', 'reject'),
    ('accepted', 'dispatched', 'dispatch'), ('accepted', 'rejected', 'reject'),
    ('dispatched', 'handled', 'handle'),
    ('handled', 'verified', 'verify'),
    ('verified', 'closed', 'close'), ('verified', 'dispatched', 'reopen'),
    ('closed', 'dispatched', 'reopen');

CREATE TABLE events (
    id              text PRIMARY KEY CHECK (id <> ''),
    category        text NOT NULL REFERENCES event_category (code),
    priority        text NOT NULL CHECK (priority IN ('A', 'B', 'C', 'D')),
    source          text NOT NULL CHECK (source IN ('grid_worker', 'resident', 'camera')),
    description     text,
    status          text NOT NULL DEFAULT 'reported' CHECK (status IN
                        ('reported', 'accepted', 'dispatched', 'handled', 'verified', 'closed', 'rejected')),
    worker_id       text REFERENCES workers (id) ON DELETE SET NULL,
    building_id     text REFERENCES buildings (id) ON DELETE SET NULL,
    grid_id         text REFERENCES grid_cells (id) ON DELETE SET NULL,
    community_id    text REFERENCES communities (id) ON DELETE SET NULL,
    reported_at     timestamptz NOT NULL DEFAULT now(),
    accepted_at     timestamptz,
    dispatched_at   timestamptz,
    handled_at      timestamptz,
    verified_at     timestamptz,
    closed_at       timestamptz,
    rejected_at     timestamptz,
    deadline_at     timestamptz,
    reopened_count  integer NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    geom            geometry(Point, 4490) NOT NULL,
    geom_4548       geometry(Point, 4548) {_G4548},
    CONSTRAINT events_status_time_ck CHECK (
        (status <> 'accepted' OR accepted_at IS NOT NULL) AND
        (status <> 'dispatched' OR dispatched_at IS NOT NULL) AND
        (status <> 'handled' OR handled_at IS NOT NULL) AND
        (status <> 'verified' OR verified_at IS NOT NULL) AND
        (status <> 'closed' OR closed_at IS NOT NULL) AND
        (status <> 'rejected' OR rejected_at IS NOT NULL))
);
CREATE INDEX events_geom_gix ON events USING gist (geom);
CREATE INDEX events_geom_4548_gix ON events USING gist (geom_4548);
CREATE INDEX events_reported_at_idx ON events (reported_at);
CREATE INDEX events_category_reported_at_idx ON events (category, reported_at);
CREATE INDEX events_grid_id_idx ON events (grid_id);
CREATE INDEX events_worker_id_idx ON events (worker_id);
CREATE INDEX events_building_id_idx ON events (building_id);
CREATE INDEX events_open_deadline_idx ON events (deadline_at)
    WHERE status NOT IN ('closed', 'rejected');

CREATE TABLE event_status_history (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id     text NOT NULL REFERENCES events (id),
    from_status  text,
    to_status    text NOT NULL,
    at           timestamptz NOT NULL,
    actor        text,
    note         text,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX event_status_history_event_id_at_idx ON event_status_history (event_id, at);
CREATE INDEX event_status_history_at_brin ON event_status_history USING brin (at);
"""

TRACK_TABLES = f"""
CREATE TABLE gps_fixes (
    device_id  text NOT NULL,
    worker_id  text,
    t          timestamptz NOT NULL,
    speed      real,
    accuracy   real,
    geom       geometry(Point, 4490) NOT NULL,
    geom_4548  geometry(Point, 4548) {_G4548},
    PRIMARY KEY (device_id, t)
) PARTITION BY RANGE (t);
CREATE TABLE gps_fixes_default PARTITION OF gps_fixes DEFAULT;
CREATE INDEX gps_fixes_worker_id_t_idx ON gps_fixes (worker_id, t);
CREATE INDEX gps_fixes_t_brin ON gps_fixes USING brin (t) WITH (pages_per_range = 32);
CREATE INDEX gps_fixes_geom_gix ON gps_fixes USING gist (geom);

CREATE TABLE worker_positions (
    worker_id  text PRIMARY KEY REFERENCES workers (id) ON DELETE CASCADE,
    device_id  text NOT NULL,
    t          timestamptz NOT NULL,
    speed      real,
    accuracy   real,
    geom       geometry(Point, 4490) NOT NULL,
    geom_4548  geometry(Point, 4548) {_G4548}
);
CREATE INDEX worker_positions_geom_gix ON worker_positions USING gist (geom);
CREATE INDEX worker_positions_geom_4548_gix ON worker_positions USING gist (geom_4548);

CREATE TABLE shift_tracks (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    worker_id    text NOT NULL REFERENCES workers (id) ON DELETE CASCADE,
    day          date NOT NULL,
    shift_start  timestamptz NOT NULL,
    shift_end    timestamptz NOT NULL,
    n_fixes      integer NOT NULL,
    n_spikes     integer NOT NULL,
    n_jitter     integer NOT NULL,
    length_m     double precision NOT NULL,
    geom         geometry(MultiLineString, 4490),
    geom_4548    geometry(MultiLineString, 4548) {_G4548},
    CONSTRAINT shift_tracks_worker_start_uq UNIQUE (worker_id, shift_start)
);
CREATE INDEX shift_tracks_day_idx ON shift_tracks (day);
CREATE INDEX shift_tracks_geom_gix ON shift_tracks USING gist (geom);

CREATE TABLE checkins (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    checkpoint_id   text NOT NULL REFERENCES checkpoints (id) ON DELETE CASCADE,
    worker_id       text NOT NULL REFERENCES workers (id) ON DELETE CASCADE,
    shift_start     timestamptz NOT NULL,
    first_t         timestamptz NOT NULL,
    last_t          timestamptz NOT NULL,
    n_fixes         integer NOT NULL,
    min_distance_m  double precision NOT NULL,
    CONSTRAINT checkins_uq UNIQUE (checkpoint_id, worker_id, shift_start)
);
CREATE INDEX checkins_worker_id_first_t_idx ON checkins (worker_id, first_t);

CREATE TABLE alarms (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind             text NOT NULL CHECK (kind IN ('left_patrol_area', 'no_parking_dwell')),
    worker_id        text REFERENCES workers (id) ON DELETE SET NULL,
    device_id        text,
    geofence_id      text REFERENCES geofences (id) ON DELETE SET NULL,
    t_start          timestamptz NOT NULL,
    t_end            timestamptz NOT NULL,
    raised_at        timestamptz NOT NULL,
    details          jsonb NOT NULL DEFAULT '{{}}',
    created_at       timestamptz NOT NULL DEFAULT now(),
    acknowledged_at  timestamptz,
    geom             geometry(Point, 4490),
    geom_4548        geometry(Point, 4548) {_G4548},
    CONSTRAINT alarms_episode_uq UNIQUE NULLS NOT DISTINCT (kind, worker_id, geofence_id, t_start)
);
CREATE INDEX alarms_raised_at_idx ON alarms (raised_at);
CREATE INDEX alarms_geom_gix ON alarms USING gist (geom);

CREATE TABLE alarm_watermark (
    name        text PRIMARY KEY,
    t           timestamptz,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
"""

RESTRICTED_TABLES = """
CREATE TABLE restricted.persons (
    person_id    text PRIMARY KEY CHECK (person_id <> ''),
    building_id  text NOT NULL REFERENCES buildings (id),
    unit         integer,
    floor        integer,
    birth_year   integer NOT NULL CHECK (birth_year BETWEEN 1880 AND 2100),
    sex          text CHECK (sex IN ('M', 'F')),
    residence    text NOT NULL CHECK (residence IN ('registered', 'floating')),
    care_flags   text[] NOT NULL DEFAULT '{}'
);
CREATE INDEX persons_building_id_idx ON restricted.persons (building_id);
"""

# --- notify + events ------------------------------------------------------------------------------
NOTIFY_FUNCTIONS = r"""
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
"""

LOCATE = """
-- Building / grid cell / community containing a point (EPSG:4548). Used by the loaders
-- (set-based) and by the events insert trigger (single rows), so both agree.
CREATE FUNCTION locate_point(p geometry)
RETURNS TABLE (building_id text, grid_id text, community_id text)
LANGUAGE sql STABLE AS $$
    SELECT
        (SELECT b.id FROM buildings b WHERE ST_Intersects(b.geom_4548, p) ORDER BY b.id LIMIT 1),
        (SELECT g.id FROM grid_cells g WHERE ST_Intersects(g.geom_4548, p) ORDER BY g.id LIMIT 1),
        COALESCE(
            (SELECT c.id FROM communities c WHERE ST_Intersects(c.geom_4548, p) ORDER BY c.id LIMIT 1),
            (SELECT g.community_id FROM grid_cells g WHERE ST_Intersects(g.geom_4548, p)
              ORDER BY g.id LIMIT 1))
$$;
"""

EVENT_TRIGGERS = r"""
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
"""

# --- GPS ----------------------------------------------------------------------------------------
GPS_FUNCTIONS = r"""
-- Monthly (UTC) partitions gps_fixes_pYYYYMM covering [p_from, p_to]; rows already caught by
-- the default partition in a new month's range are moved into it. Returns partitions created.
CREATE FUNCTION ensure_gps_partitions(p_from timestamptz, p_to timestamptz) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    m timestamp := date_trunc('month', p_from AT TIME ZONE 'UTC');
    last_m timestamp := date_trunc('month', p_to AT TIME ZONE 'UTC');
    lo timestamptz;
    hi timestamptz;
    name text;
    created integer := 0;
    moved bigint;
BEGIN
    IF p_from IS NULL OR p_to IS NULL THEN
        RETURN 0;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('onemap.gps_partitions'));
    WHILE m <= last_m LOOP
        name := format('gps_fixes_p%s', to_char(m, 'YYYYMM'));
        IF to_regclass(name) IS NULL THEN
            lo := m AT TIME ZONE 'UTC';
            hi := (m + interval '1 month') AT TIME ZONE 'UTC';
            CREATE TEMP TABLE IF NOT EXISTS _gps_moved (LIKE gps_fixes) ON COMMIT DROP;
            TRUNCATE _gps_moved;
            WITH d AS (DELETE FROM gps_fixes_default WHERE t >= lo AND t < hi
                       RETURNING device_id, worker_id, t, speed, accuracy, geom)
            INSERT INTO _gps_moved (device_id, worker_id, t, speed, accuracy, geom) SELECT * FROM d;
            GET DIAGNOSTICS moved = ROW_COUNT;
            EXECUTE format('CREATE TABLE %I PARTITION OF gps_fixes FOR VALUES FROM (%L) TO (%L)',
                           name, lo, hi);
            IF moved > 0 THEN
                PERFORM set_config('onemap.quiet', 'on', true);
                INSERT INTO gps_fixes (device_id, worker_id, t, speed, accuracy, geom)
                SELECT device_id, worker_id, t, speed, accuracy, geom FROM _gps_moved;
            END IF;
            created := created + 1;
        END IF;
        m := m + interval '1 month';
    END LOOP;
    RETURN created;
END $$;

-- Latest position per worker (KNN target) + throttled 'position' NOTIFY: one statement-level
-- trigger per INSERT/COPY batch, messages of at most 40 positions, nothing for stale fixes.
CREATE FUNCTION gps_fixes_after_insert() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_chunks jsonb[];
    v_chunk jsonb;
    v_total integer;
BEGIN
    WITH latest AS (
        SELECT DISTINCT ON (f.worker_id) f.worker_id, f.device_id, f.t, f.speed, f.accuracy, f.geom
          FROM new_fixes f
         WHERE f.worker_id IS NOT NULL
         ORDER BY f.worker_id, f.t DESC
    ), upserted AS (
        INSERT INTO worker_positions AS wp (worker_id, device_id, t, speed, accuracy, geom)
        SELECT l.* FROM latest l JOIN workers w ON w.id = l.worker_id
        ON CONFLICT (worker_id) DO UPDATE
           SET device_id = EXCLUDED.device_id, t = EXCLUDED.t, speed = EXCLUDED.speed,
               accuracy = EXCLUDED.accuracy, geom = EXCLUDED.geom
         WHERE EXCLUDED.t > wp.t
        RETURNING wp.worker_id, wp.device_id, wp.t, wp.speed, wp.geom
    ), numbered AS (
        SELECT u.*, (row_number() OVER (ORDER BY u.worker_id) - 1) / 40 AS grp,
               count(*) OVER () AS total
          FROM upserted u
    )
    SELECT array_agg(c.chunk ORDER BY c.grp), max(c.total) INTO v_chunks, v_total
      FROM (SELECT grp, max(total) AS total,
                   jsonb_agg(jsonb_build_object(
                       'worker_id', worker_id, 'device_id', device_id, 't', t,
                       'lon', round(ST_X(geom)::numeric, 7), 'lat', round(ST_Y(geom)::numeric, 7),
                       'speed', speed) ORDER BY worker_id) AS chunk
              FROM numbered GROUP BY grp) c;
    IF v_chunks IS NULL OR coalesce(current_setting('onemap.quiet', true), '') = 'on' THEN
        RETURN NULL;
    END IF;
    FOREACH v_chunk IN ARRAY v_chunks LOOP
        PERFORM onemap_notify(jsonb_build_object('type', 'position', 'count', jsonb_array_length(v_chunk),
                                                 'total', v_total, 'positions', v_chunk));
    END LOOP;
    RETURN NULL;
END $$;
CREATE TRIGGER gps_fixes_after_insert AFTER INSERT ON gps_fixes
    REFERENCING NEW TABLE AS new_fixes FOR EACH STATEMENT EXECUTE FUNCTION gps_fixes_after_insert();

-- Rebuild worker_positions from gps_fixes (after bulk loads done with triggers off).
CREATE FUNCTION refresh_worker_positions() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    DELETE FROM worker_positions;
    INSERT INTO worker_positions (worker_id, device_id, t, speed, accuracy, geom)
    SELECT w.id, f.device_id, f.t, f.speed, f.accuracy, f.geom
      FROM workers w
      CROSS JOIN LATERAL (SELECT * FROM gps_fixes g WHERE g.worker_id = w.id
                           ORDER BY g.t DESC LIMIT 1) f;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

-- Track cleaning, one pass per worker ordered by time (see docs/postgis.md "Tracks"):
--  * a fix further than p_max_gap_s after the previous one starts a new segment ('gap');
--  * implied speed from the anchor (last kept fix) > p_max_speed: 'spike' (ignored); after
--    p_reanchor_n consecutive spikes the position is accepted as a jump ('reanchor', 0 m);
--  * a step from the anchor shorter than max(p_min_step_m, p_jitter_k * accuracy): 'jitter';
--  * otherwise 'kept': step_m = distance from the anchor, which moves there.
-- 'start' | 'gap' | 'reanchor' | 'kept' fixes are the track's vertices.
CREATE FUNCTION clean_fixes(
    p_from timestamptz, p_to timestamptz, p_worker text DEFAULT NULL,
    p_max_speed double precision DEFAULT 15, p_jitter_k double precision DEFAULT 1.0,
    p_min_step_m double precision DEFAULT 3, p_max_gap_s double precision DEFAULT 600,
    p_reanchor_n integer DEFAULT 3)
RETURNS TABLE (worker_id text, device_id text, t timestamptz, x double precision,
               y double precision, accuracy real, status text, step_m double precision, seg integer)
LANGUAGE plpgsql STABLE ROWS 500000 AS $$
DECLARE
    r record;
    cur_worker text := NULL;
    ax double precision; ay double precision; at_ts timestamptz;
    prev_t timestamptz;
    n_spike integer := 0;
    d double precision; dt double precision; thr double precision;
BEGIN
    FOR r IN
        SELECT f.worker_id AS w, f.device_id AS dev, f.t AS ft, ST_X(f.geom_4548) AS fx,
               ST_Y(f.geom_4548) AS fy, f.accuracy AS acc
          FROM gps_fixes f
         WHERE f.t >= p_from AND f.t < p_to AND f.worker_id IS NOT NULL
           AND (p_worker IS NULL OR f.worker_id = p_worker)
         ORDER BY f.worker_id, f.t
    LOOP
        worker_id := r.w; device_id := r.dev; t := r.ft; x := r.fx; y := r.fy; accuracy := r.acc;
        IF cur_worker IS DISTINCT FROM r.w THEN
            cur_worker := r.w; seg := 1; n_spike := 0;
            ax := r.fx; ay := r.fy; at_ts := r.ft; prev_t := r.ft;
            status := 'start'; step_m := 0;
            RETURN NEXT;
            CONTINUE;
        END IF;
        IF extract(epoch FROM r.ft - prev_t) > p_max_gap_s THEN
            seg := seg + 1; n_spike := 0;
            ax := r.fx; ay := r.fy; at_ts := r.ft; prev_t := r.ft;
            status := 'gap'; step_m := 0;
            RETURN NEXT;
            CONTINUE;
        END IF;
        prev_t := r.ft;
        d := sqrt((r.fx - ax) ^ 2 + (r.fy - ay) ^ 2);
        dt := extract(epoch FROM r.ft - at_ts);
        IF dt <= 0 OR d / dt > p_max_speed THEN
            IF dt > 0 THEN
                n_spike := n_spike + 1;
            END IF;
            IF n_spike >= p_reanchor_n THEN
                seg := seg + 1; n_spike := 0;
                ax := r.fx; ay := r.fy; at_ts := r.ft;
                status := 'reanchor'; step_m := 0;
            ELSE
                status := CASE WHEN dt <= 0 THEN 'jitter' ELSE 'spike' END; step_m := 0;
            END IF;
            RETURN NEXT;
            CONTINUE;
        END IF;
        n_spike := 0;
        thr := greatest(p_min_step_m, p_jitter_k * coalesce(r.acc, 0));
        IF d < thr THEN
            status := 'jitter'; step_m := 0;
        ELSE
            status := 'kept'; step_m := d;
            ax := r.fx; ay := r.fy; at_ts := r.ft;
        END IF;
        RETURN NEXT;
    END LOOP;
    RETURN;
END $$;

-- Shifts: a worker's fixes split where consecutive fixes are more than p_gap_s apart.
CREATE FUNCTION worker_shifts(p_from timestamptz, p_to timestamptz, p_gap_s double precision DEFAULT 1800)
RETURNS TABLE (worker_id text, shift_start timestamptz, shift_end timestamptz, n_fixes bigint)
LANGUAGE sql STABLE AS $$
    SELECT s.worker_id, min(s.t), max(s.t), count(*)
      FROM (SELECT b.worker_id, b.t, sum(b.brk) OVER (PARTITION BY b.worker_id ORDER BY b.t) AS shift_no
              FROM (SELECT f.worker_id, f.t,
                           CASE WHEN lag(f.t) OVER w IS NULL
                                  OR extract(epoch FROM f.t - lag(f.t) OVER w) > p_gap_s
                                THEN 1 ELSE 0 END AS brk
                      FROM gps_fixes f
                     WHERE f.t >= p_from AND f.t < p_to AND f.worker_id IS NOT NULL
                    WINDOW w AS (PARTITION BY f.worker_id ORDER BY f.t)) b) s
     GROUP BY s.worker_id, s.shift_no
$$;

-- Visits of checkpoints: fixes within a checkpoint's radius, per worker shift.
CREATE FUNCTION checkpoint_visits(p_from timestamptz, p_to timestamptz,
                                  p_gap_s double precision DEFAULT 1800)
RETURNS TABLE (checkpoint_id text, worker_id text, shift_start timestamptz, shift_end timestamptz,
               first_t timestamptz, last_t timestamptz, n_fixes bigint, min_distance_m double precision)
LANGUAGE sql STABLE AS $$
    WITH shifts AS MATERIALIZED (SELECT * FROM worker_shifts(p_from, p_to, p_gap_s)),
    maxr AS (SELECT COALESCE(max(radius_m), 0) AS r FROM checkpoints),
    hits AS (
        SELECT cp.id AS checkpoint_id, f.worker_id, f.t,
               ST_Distance(cp.geom_4548, f.geom_4548) AS dist
          FROM gps_fixes f, maxr
          JOIN checkpoints cp ON true
         WHERE f.t >= p_from AND f.t < p_to AND f.worker_id IS NOT NULL
           AND ST_DWithin(cp.geom_4548, f.geom_4548, maxr.r)
           AND ST_Distance(cp.geom_4548, f.geom_4548) <= cp.radius_m)
    SELECT h.checkpoint_id, h.worker_id, s.shift_start, s.shift_end, min(h.t), max(h.t), count(*),
           min(h.dist)
      FROM hits h
      JOIN shifts s ON s.worker_id = h.worker_id AND h.t BETWEEN s.shift_start AND s.shift_end
     GROUP BY h.checkpoint_id, h.worker_id, s.shift_start, s.shift_end
$$;

-- Materialise shift_tracks for shifts starting in [p_from, p_to) (replaces those rows).
CREATE FUNCTION derive_shift_tracks(p_from timestamptz, p_to timestamptz,
                                    p_gap_s double precision DEFAULT 1800,
                                    p_max_speed double precision DEFAULT 15,
                                    p_jitter_k double precision DEFAULT 1.0,
                                    p_min_step_m double precision DEFAULT 3)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    DELETE FROM shift_tracks WHERE shift_start >= p_from AND shift_start < p_to;
    -- Every CTE is MATERIALIZED: inlined, the per-shift line aggregate sat on the inner side of a
    -- nested loop (row estimates of 1 from the set-returning function) and was recomputed once
    -- per shift: quadratic, 35 min for the sample's 4.3 M fixes instead of seconds.
    INSERT INTO shift_tracks (worker_id, day, shift_start, shift_end, n_fixes, n_spikes, n_jitter,
                              length_m, geom)
    WITH c AS MATERIALIZED (
        SELECT b.*, sum(b.brk) OVER (PARTITION BY b.worker_id ORDER BY b.t) AS shift_no
          FROM (SELECT cf.*, CASE WHEN cf.status = 'start'
                                    OR extract(epoch FROM cf.t - lag(cf.t) OVER w) > p_gap_s
                                  THEN 1 ELSE 0 END AS brk
                  FROM clean_fixes(p_from, p_to, NULL, p_max_speed, p_jitter_k, p_min_step_m) cf
                WINDOW w AS (PARTITION BY cf.worker_id ORDER BY cf.t)) b
    ), lines AS MATERIALIZED (
        SELECT c.worker_id, c.shift_no, c.seg,
               ST_MakeLine(ST_SetSRID(ST_MakePoint(c.x, c.y), 4548) ORDER BY c.t) AS line
          FROM c WHERE c.status IN ('start', 'gap', 'reanchor', 'kept')
         GROUP BY c.worker_id, c.shift_no, c.seg
    ), shift_lines AS MATERIALIZED (
        SELECT worker_id, shift_no,
               ST_Multi(ST_Collect(line ORDER BY seg) FILTER (WHERE ST_NPoints(line) >= 2)) AS geom_4548
          FROM lines GROUP BY worker_id, shift_no
    ), shifts AS MATERIALIZED (
        SELECT worker_id, shift_no, min(t) AS shift_start, max(t) AS shift_end, count(*) AS n_fixes,
               count(*) FILTER (WHERE status = 'spike') AS n_spikes,
               count(*) FILTER (WHERE status = 'jitter') AS n_jitter, sum(step_m) AS length_m
          FROM c GROUP BY worker_id, shift_no
    )
    SELECT s.worker_id, (s.shift_start AT TIME ZONE 'Asia/Shanghai')::date, s.shift_start, s.shift_end,
           s.n_fixes, s.n_spikes, s.n_jitter, s.length_m, ST_Transform(l.geom_4548, 4490)
      FROM shifts s
      JOIN workers w ON w.id = s.worker_id
      LEFT JOIN shift_lines l USING (worker_id, shift_no)
     WHERE s.shift_start >= p_from AND s.shift_start < p_to;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
"""

GEOFENCE_FUNCTIONS = r"""
-- Episodes that deserve an alarm, from the fixes in [p_from, p_to):
--  left_patrol_area: consecutive fixes of a worker farther than p_tolerance_m from all of its
--    patrol_area geofences, lasting >= p_min_outside_s (an inside fix or a gap > p_max_gap_s ends it);
--  no_parking_dwell: consecutive fixes of a worker whose kind is in p_dwell_kinds inside the same
--    no_parking geofence for >= its max_dwell_min (or p_default_dwell_min).
CREATE FUNCTION geofence_episodes(
    p_from timestamptz, p_to timestamptz,
    p_min_outside_s double precision DEFAULT 60, p_tolerance_m double precision DEFAULT 10,
    p_max_gap_s double precision DEFAULT 300, p_default_dwell_min double precision DEFAULT 15,
    p_dwell_kinds text[] DEFAULT '{vehicle}')
RETURNS TABLE (kind text, worker_id text, device_id text, geofence_id text, t_start timestamptz,
               t_end timestamptz, raised_at timestamptz, n_fixes bigint, geom geometry)
LANGUAGE sql STABLE AS $$
    WITH fx AS MATERIALIZED (
        SELECT f.worker_id, f.device_id, f.t, f.geom, f.geom_4548, w.kind AS worker_kind
          FROM gps_fixes f JOIN workers w ON w.id = f.worker_id
         WHERE f.t >= p_from AND f.t < p_to
    ),
    areas AS (SELECT g.worker_id, min(g.id) AS geofence_id, ST_Union(g.geom_4548) AS geom_4548
                FROM geofences g WHERE g.kind = 'patrol_area' AND g.worker_id IS NOT NULL
               GROUP BY g.worker_id),
    pa AS (
        SELECT fx.*, a.geofence_id, NOT ST_DWithin(a.geom_4548, fx.geom_4548, p_tolerance_m) AS outside
          FROM fx JOIN areas a ON a.worker_id = fx.worker_id
    ),
    pa_isl AS (
        SELECT b.*, sum(b.brk) OVER (PARTITION BY b.worker_id ORDER BY b.t) AS island
          FROM (SELECT pa.*, CASE WHEN lag(pa.outside) OVER w IS DISTINCT FROM pa.outside
                                    OR extract(epoch FROM pa.t - lag(pa.t) OVER w) > p_max_gap_s
                                  THEN 1 ELSE 0 END AS brk
                  FROM pa WINDOW w AS (PARTITION BY pa.worker_id ORDER BY pa.t)) b
    ),
    pa_ep AS (
        SELECT 'left_patrol_area'::text AS kind, worker_id, min(device_id) AS device_id,
               min(geofence_id) AS geofence_id, min(t) AS t_start, max(t) AS t_end,
               min(t) + make_interval(secs => p_min_outside_s) AS raised_at, count(*) AS n_fixes,
               (array_agg(geom ORDER BY t))[1] AS geom
          FROM pa_isl WHERE outside
         GROUP BY worker_id, island
        HAVING extract(epoch FROM max(t) - min(t)) >= p_min_outside_s
    ),
    np AS (
        SELECT fx.*, z.id AS zone_id, z.max_dwell_min
          FROM fx
          LEFT JOIN LATERAL (SELECT g.id, g.max_dwell_min FROM geofences g
                              WHERE g.kind = 'no_parking' AND ST_Intersects(g.geom_4548, fx.geom_4548)
                              ORDER BY g.id LIMIT 1) z ON true
         WHERE fx.worker_kind = ANY (p_dwell_kinds)
    ),
    np_isl AS (
        SELECT b.*, sum(b.brk) OVER (PARTITION BY b.worker_id ORDER BY b.t) AS island
          FROM (SELECT np.*, CASE WHEN lag(np.zone_id) OVER w IS DISTINCT FROM np.zone_id
                                    OR extract(epoch FROM np.t - lag(np.t) OVER w) > p_max_gap_s
                                  THEN 1 ELSE 0 END AS brk
                  FROM np WINDOW w AS (PARTITION BY np.worker_id ORDER BY np.t)) b
    ),
    np_ep AS (
        SELECT 'no_parking_dwell'::text, worker_id, min(device_id), zone_id, min(t), max(t),
               min(t) + make_interval(secs => COALESCE(max(max_dwell_min), p_default_dwell_min) * 60),
               count(*), (array_agg(geom ORDER BY t))[1]
          FROM np_isl WHERE zone_id IS NOT NULL
         GROUP BY worker_id, island, zone_id
        HAVING extract(epoch FROM max(t) - min(t))
               >= COALESCE(max(max_dwell_min), p_default_dwell_min) * 60
    )
    SELECT * FROM pa_ep UNION ALL SELECT * FROM np_ep
$$;

-- Merge episodes of [p_from, p_to) into alarms: an episode overlapping (or within p_max_gap_s of)
-- an existing alarm of the same kind/worker/geofence extends it; others are inserted (NOTIFY).
-- Returns the number of new alarms.
CREATE FUNCTION raise_geofence_alarms(
    p_from timestamptz, p_to timestamptz,
    p_min_outside_s double precision DEFAULT 60, p_tolerance_m double precision DEFAULT 10,
    p_max_gap_s double precision DEFAULT 300, p_default_dwell_min double precision DEFAULT 15,
    p_dwell_kinds text[] DEFAULT '{vehicle}')
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    CREATE TEMP TABLE IF NOT EXISTS _episodes (
        kind text, worker_id text, device_id text, geofence_id text, t_start timestamptz,
        t_end timestamptz, raised_at timestamptz, n_fixes bigint, geom geometry,
        alarm_id bigint) ON COMMIT DROP;
    TRUNCATE _episodes;
    INSERT INTO _episodes
    SELECT e.*, (SELECT a.id FROM alarms a
                  WHERE a.kind = e.kind AND a.worker_id IS NOT DISTINCT FROM e.worker_id
                    AND a.geofence_id IS NOT DISTINCT FROM e.geofence_id
                    AND a.t_start <= e.t_end + make_interval(secs => p_max_gap_s)
                    AND a.t_end >= e.t_start - make_interval(secs => p_max_gap_s)
                  ORDER BY a.t_start LIMIT 1)
      FROM geofence_episodes(p_from, p_to, p_min_outside_s, p_tolerance_m, p_max_gap_s,
                             p_default_dwell_min, p_dwell_kinds) e;
    UPDATE alarms a SET t_end = greatest(a.t_end, x.t_end),
                        details = a.details || jsonb_build_object('n_fixes_last_run', x.n_fixes)
      FROM (SELECT alarm_id, max(t_end) AS t_end, max(n_fixes) AS n_fixes FROM _episodes
             WHERE alarm_id IS NOT NULL GROUP BY alarm_id) x
     WHERE a.id = x.alarm_id AND x.t_end > a.t_end;
    INSERT INTO alarms (kind, worker_id, device_id, geofence_id, t_start, t_end, raised_at, details, geom)
    SELECT kind, worker_id, device_id, geofence_id, t_start, t_end, raised_at,
           jsonb_build_object('n_fixes', n_fixes), geom
      FROM _episodes WHERE alarm_id IS NULL
    ON CONFLICT ON CONSTRAINT alarms_episode_uq DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

-- Incremental: fixes newer than the watermark (re-reading p_lookback before it so episodes in
-- progress are seen whole); advances the watermark to the newest fix. Returns new alarms.
CREATE FUNCTION process_geofence_alarms(p_lookback interval DEFAULT interval '2 hours',
                                        p_name text DEFAULT 'geofence')
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    wm timestamptz;
    newest timestamptz;
    n integer;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('onemap.alarm_watermark.' || p_name));
    SELECT t INTO wm FROM alarm_watermark WHERE name = p_name;
    SELECT max(t) INTO newest FROM worker_positions;
    IF newest IS NULL OR (wm IS NOT NULL AND newest <= wm) THEN
        RETURN 0;
    END IF;
    n := raise_geofence_alarms(COALESCE(wm - p_lookback, '-infinity'::timestamptz),
                               newest + interval '1 microsecond');
    INSERT INTO alarm_watermark (name, t, updated_at) VALUES (p_name, newest, now())
    ON CONFLICT (name) DO UPDATE SET t = EXCLUDED.t, updated_at = EXCLUDED.updated_at;
    RETURN n;
END $$;

CREATE FUNCTION alarms_after_insert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
    r record;
BEGIN
    SELECT count(*) INTO n FROM new_alarms;
    IF n <= 20 THEN
        FOR r IN SELECT * FROM new_alarms ORDER BY id LOOP
            PERFORM onemap_notify(jsonb_build_object(
                'type', 'alarm', 'id', r.id, 'kind', r.kind, 'worker_id', r.worker_id,
                'device_id', r.device_id, 'geofence_id', r.geofence_id, 't_start', r.t_start,
                'raised_at', r.raised_at,
                'lon', round(ST_X(r.geom)::numeric, 7), 'lat', round(ST_Y(r.geom)::numeric, 7)));
        END LOOP;
    ELSE
        PERFORM onemap_notify(jsonb_build_object('type', 'alarm', 'bulk', true, 'count', n,
            'first_id', (SELECT min(id) FROM new_alarms), 'last_id', (SELECT max(id) FROM new_alarms)));
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER alarms_after_insert AFTER INSERT ON alarms
    REFERENCING NEW TABLE AS new_alarms FOR EACH STATEMENT EXECUTE FUNCTION alarms_after_insert();
"""

POPULATION_VIEWS = r"""
-- Ages are counted in whole years from birth_year against the current year (Asia/Shanghai).
CREATE FUNCTION population_ref_year() RETURNS integer LANGUAGE sql STABLE AS $$
    SELECT extract(year FROM now() AT TIME ZONE 'Asia/Shanghai')::integer
$$;

CREATE VIEW restricted.population_person_flags AS
SELECT p.person_id, p.building_id, b.grid_id, b.community_id,
       (p.residence = 'registered') AS registered,
       (p.residence = 'floating') AS floating,
       (population_ref_year() - p.birth_year >= 60) AS age_60_plus,
       (population_ref_year() - p.birth_year >= 80) AS age_80_plus,
       (population_ref_year() - p.birth_year < 14) AS children_under_14,
       (cardinality(p.care_flags) > 0) AS special_care
  FROM restricted.persons p JOIN buildings b ON b.id = p.building_id;
"""


def _population_full_view(level: str, key: str, source: str, geom_source: str) -> str:
    return f"""
CREATE VIEW restricted.population_by_{level}_full AS
SELECT s.id AS {key}, s.name,
       count(f.person_id)::integer AS total,
       count(*) FILTER (WHERE f.registered)::integer AS registered,
       count(*) FILTER (WHERE f.floating)::integer AS floating,
       count(*) FILTER (WHERE f.age_60_plus)::integer AS age_60_plus,
       count(*) FILTER (WHERE f.age_80_plus)::integer AS age_80_plus,
       count(*) FILTER (WHERE f.children_under_14)::integer AS children_under_14,
       count(*) FILTER (WHERE f.special_care)::integer AS special_care,
       s.geom
  FROM {source} s
  LEFT JOIN restricted.population_person_flags f ON f.{geom_source} = s.id
 GROUP BY s.id, s.name, s.geom;
"""


def _population_public_view(level: str, key: str) -> str:
    cols = ["age_60_plus", "age_80_plus", "children_under_14", "special_care"]
    sup = ",\n       ".join(f"CASE WHEN f.{c} < 5 THEN NULL ELSE f.{c} END AS {c}" for c in cols)
    flags = " ||\n           ".join(
        f"CASE WHEN f.{c} < 5 THEN ARRAY['{c}'] ELSE '{{}}'::text[] END" for c in cols
    )
    return f"""
-- Counts below 5 are NULL (and listed in `suppressed`). registered/floating sum to total, so
-- when either is small both are suppressed (otherwise total - other would reveal it).
CREATE VIEW population_by_{level} AS
SELECT f.{key}, f.name,
       CASE WHEN f.total < 5 THEN NULL ELSE f.total END AS total,
       CASE WHEN f.total < 5 OR f.registered < 5 OR f.floating < 5 THEN NULL ELSE f.registered END
           AS registered,
       CASE WHEN f.total < 5 OR f.registered < 5 OR f.floating < 5 THEN NULL ELSE f.floating END
           AS floating,
       {sup},
       (CASE WHEN f.total < 5 THEN ARRAY['total'] ELSE '{{}}'::text[] END ||
        CASE WHEN f.total < 5 OR f.registered < 5 OR f.floating < 5
             THEN ARRAY['registered', 'floating'] ELSE '{{}}'::text[] END ||
           {flags}) AS suppressed,
       f.geom
  FROM restricted.population_by_{level}_full f;
"""


POP_LEVELS = [
    ("building", "building_id", "(SELECT id, name, geom FROM buildings)", "building_id"),
    ("grid", "grid_id", "(SELECT id, name, geom FROM grid_cells)", "grid_id"),
    ("community", "community_id", "(SELECT id, name, geom FROM communities)", "community_id"),
]

PUBLIC_TABLES = [
    "communities", "grid_cells", "buildings", "roads", "workers", "devices", "cameras", "checkpoints",
    "geofences", "event_category", "event_transition", "events", "event_status_history", "gps_fixes",
    "worker_positions", "shift_tracks", "checkins", "alarms", "alarm_watermark",
    "population_by_building", "population_by_grid", "population_by_community",
]

ROLES = """
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'onemap_reader') THEN
        CREATE ROLE onemap_reader NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'onemap_writer') THEN
        CREATE ROLE onemap_writer NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'onemap_privileged') THEN
        CREATE ROLE onemap_privileged NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'onemap_admin') THEN
        CREATE ROLE onemap_admin NOLOGIN;
    END IF;
END $$;
GRANT onemap_reader TO onemap_writer;
GRANT onemap_reader TO onemap_privileged;
GRANT onemap_writer, onemap_privileged TO onemap_admin;
REVOKE ALL ON SCHEMA restricted FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO onemap_reader;
GRANT USAGE ON SCHEMA restricted TO onemap_privileged;
"""


def _grants() -> str:
    tables = ", ".join(PUBLIC_TABLES)
    return f"""
GRANT SELECT ON {tables} TO onemap_reader;
GRANT INSERT, UPDATE ON events TO onemap_writer;
GRANT INSERT ON gps_fixes, alarms TO onemap_writer;
GRANT UPDATE (t_end, details, acknowledged_at) ON alarms TO onemap_writer;
GRANT INSERT, UPDATE ON alarm_watermark TO onemap_writer;
GRANT UPDATE (status, status_changed_at) ON cameras TO onemap_writer;
GRANT SELECT ON ALL TABLES IN SCHEMA restricted TO onemap_privileged;
"""


def upgrade() -> None:
    for block in (REFERENCE_TABLES, EVENT_TABLES, TRACK_TABLES, RESTRICTED_TABLES, NOTIFY_FUNCTIONS,
                  LOCATE, EVENT_TRIGGERS, GPS_FUNCTIONS, GEOFENCE_FUNCTIONS, POPULATION_VIEWS):
        op.execute(block)
    for level, key, source, ref in POP_LEVELS:
        op.execute(_population_full_view(level, key, source, ref))
        op.execute(_population_public_view(level, key))
    op.execute(ROLES)
    op.execute(_grants())


def downgrade() -> None:
    op.execute("""
DROP VIEW IF EXISTS population_by_building, population_by_grid, population_by_community;
DROP VIEW IF EXISTS restricted.population_by_building_full, restricted.population_by_grid_full,
                    restricted.population_by_community_full, restricted.population_person_flags;
DROP TABLE IF EXISTS restricted.persons, alarm_watermark, alarms, checkins, shift_tracks,
    worker_positions, gps_fixes, event_status_history, events, event_transition, event_category,
    geofences, checkpoints, cameras, devices, workers, roads, buildings, grid_cells, communities CASCADE;
DROP FUNCTION IF EXISTS onemap_notify(jsonb), locate_point(geometry), population_ref_year(),
    events_before_insert(), events_relocate(), events_check_transition(), events_after_insert(),
    events_after_update(), event_set_status(text, text, text, text, timestamptz),
    event_status_history_append_only(), ensure_gps_partitions(timestamptz, timestamptz),
    gps_fixes_after_insert(), refresh_worker_positions(),
    clean_fixes(timestamptz, timestamptz, text, double precision, double precision, double precision,
                double precision, integer),
    worker_shifts(timestamptz, timestamptz, double precision),
    checkpoint_visits(timestamptz, timestamptz, double precision),
    derive_shift_tracks(timestamptz, timestamptz, double precision, double precision, double precision,
                        double precision),
    geofence_episodes(timestamptz, timestamptz, double precision, double precision, double precision,
                      double precision, text[]),
    raise_geofence_alarms(timestamptz, timestamptz, double precision, double precision,
                          double precision, double precision, text[]),
    process_geofence_alarms(interval, text), alarms_after_insert() CASCADE;
""")
    # Roles are cluster-wide (other databases may use them): drop only if nothing else depends.
    op.execute("""
DO $$
DECLARE r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['onemap_admin', 'onemap_privileged', 'onemap_writer', 'onemap_reader'] LOOP
        BEGIN
            EXECUTE format('REVOKE ALL ON SCHEMA public FROM %I', r);
            EXECUTE format('REVOKE ALL ON SCHEMA restricted FROM %I', r);
            EXECUTE format('DROP ROLE IF EXISTS %I', r);
        EXCEPTION WHEN dependent_objects_still_exist THEN
            RAISE NOTICE 'role % kept: still used elsewhere', r;
        END;
    END LOOP;
END $$;
""")
