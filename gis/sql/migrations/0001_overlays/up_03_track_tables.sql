-- Migration 0001_overlays: GPS fixes (monthly partitions), latest positions, shift tracks, check-ins, alarms.
CREATE TABLE gps_fixes (
    device_id  text NOT NULL,
    worker_id  text,
    t          timestamptz NOT NULL,
    speed      real,
    accuracy   real,
    geom       geometry(Point, 4490) NOT NULL,
    geom_4548  geometry(Point, 4548) GENERATED ALWAYS AS (ST_Transform(geom, 4548)) STORED,
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
    geom_4548  geometry(Point, 4548) GENERATED ALWAYS AS (ST_Transform(geom, 4548)) STORED
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
    geom_4548    geometry(MultiLineString, 4548) GENERATED ALWAYS AS (ST_Transform(geom, 4548)) STORED,
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
    details          jsonb NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL DEFAULT now(),
    acknowledged_at  timestamptz,
    geom             geometry(Point, 4490),
    geom_4548        geometry(Point, 4548) GENERATED ALWAYS AS (ST_Transform(geom, 4548)) STORED,
    CONSTRAINT alarms_episode_uq UNIQUE NULLS NOT DISTINCT (kind, worker_id, geofence_id, t_start)
);
CREATE INDEX alarms_raised_at_idx ON alarms (raised_at);
CREATE INDEX alarms_geom_gix ON alarms USING gist (geom);

CREATE TABLE alarm_watermark (
    name        text PRIMARY KEY,
    t           timestamptz,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
