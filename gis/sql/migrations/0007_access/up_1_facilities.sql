-- Migration 0007_access: service facilities (issue 16). One row per facility, a point in
-- EPSG:4490 like the other layers; community_id/building_id are set by the loader (the community
-- and the building the point lies in, unless the delivery names a known building).
CREATE TABLE facility_kind (
    kind     text PRIMARY KEY CHECK (kind <> ''),
    name_zh  text NOT NULL,
    name_en  text NOT NULL
);
INSERT INTO facility_kind (kind, name_zh, name_en) VALUES
    ('service_station', '社区服务站', 'community service station'),
    ('service_terminal', '便民服务终端', 'convenience service terminal'),
    ('elderly_care', '养老机构', 'elderly-care institution'),
    ('clinic', '社区卫生服务站', 'clinic'),
    ('school', '学校', 'school'),
    ('police', '警务室', 'police post'),
    ('convenience_store', '便利店', 'convenience store');

CREATE TABLE facilities (
    id            text PRIMARY KEY CHECK (id <> ''),
    kind          text NOT NULL REFERENCES facility_kind (kind),
    name          text,
    community_id  text REFERENCES communities (id) ON DELETE SET NULL,
    building_id   text REFERENCES buildings (id) ON DELETE SET NULL,
    attrs         jsonb NOT NULL DEFAULT '{}',
    geom          geometry(Point, 4490) NOT NULL,
    geom_4548     geometry(Point, 4548) GENERATED ALWAYS AS (ST_Transform(geom, 4548)) STORED
);
CREATE INDEX facilities_geom_gix ON facilities USING gist (geom);
CREATE INDEX facilities_geom_4548_gix ON facilities USING gist (geom_4548);
CREATE INDEX facilities_kind_idx ON facilities (kind);
CREATE INDEX facilities_community_id_idx ON facilities (community_id);
