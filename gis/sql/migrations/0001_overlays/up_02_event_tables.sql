-- Migration 0001_overlays: event categories, the lifecycle transition table, events and their append-only status history.
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
    geom_4548       geometry(Point, 4548) GENERATED ALWAYS AS (ST_Transform(geom, 4548)) STORED,
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
