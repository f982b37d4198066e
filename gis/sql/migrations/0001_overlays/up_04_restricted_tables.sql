-- Migration 0001_overlays: person-level records in the restricted schema.
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
