-- Migration 0001_overlays: reference layers (communities, grid cells, buildings, roads, workers, devices, cameras, checkpoints, geofences).
CREATE TABLE communities (
    id          text PRIMARY KEY CHECK (id <> ''),
    name        text NOT NULL,
    attrs       jsonb NOT NULL DEFAULT '{}',
    geom        geometry(MultiPolygon, 4490) NOT NULL,
    geom_4548   geometry(MultiPolygon, 4548) GENERATED ALWAYS AS (ST_Transform(geom, 4548)) STORED
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
    attrs         jsonb NOT NULL DEFAULT '{}',
    geom          geometry(MultiPolygon, 4490) NOT NULL,
    geom_4548     geometry(MultiPolygon, 4548) GENERATED ALWAYS AS (ST_Transform(geom, 4548)) STORED
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
    attrs               jsonb NOT NULL DEFAULT '{}',
    geom                geometry(MultiPolygon, 4490) NOT NULL,
    geom_4548           geometry(MultiPolygon, 4548) GENERATED ALWAYS AS (ST_Transform(geom, 4548)) STORED
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
    attrs        jsonb NOT NULL DEFAULT '{}',
    geom         geometry(MultiLineString, 4490) NOT NULL,
    geom_4548    geometry(MultiLineString, 4548) GENERATED ALWAYS AS (ST_Transform(geom, 4548)) STORED
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
    attrs    jsonb NOT NULL DEFAULT '{}'
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
    attrs              jsonb NOT NULL DEFAULT '{}',
    geom               geometry(Point, 4490) NOT NULL,
    geom_4548          geometry(Point, 4548) GENERATED ALWAYS AS (ST_Transform(geom, 4548)) STORED
);
CREATE INDEX cameras_geom_gix ON cameras USING gist (geom);
CREATE INDEX cameras_geom_4548_gix ON cameras USING gist (geom_4548);

CREATE TABLE checkpoints (
    id         text PRIMARY KEY CHECK (id <> ''),
    name       text,
    grid_id    text REFERENCES grid_cells (id) ON DELETE SET NULL,
    radius_m   double precision NOT NULL CHECK (radius_m > 0),
    geom       geometry(Point, 4490) NOT NULL,
    geom_4548  geometry(Point, 4548) GENERATED ALWAYS AS (ST_Transform(geom, 4548)) STORED
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
    geom_4548      geometry(MultiPolygon, 4548) GENERATED ALWAYS AS (ST_Transform(geom, 4548)) STORED
);
CREATE INDEX geofences_geom_gix ON geofences USING gist (geom);
CREATE INDEX geofences_geom_4548_gix ON geofences USING gist (geom_4548);
CREATE INDEX geofences_worker_id_idx ON geofences (worker_id);
