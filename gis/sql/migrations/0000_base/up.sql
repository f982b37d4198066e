-- Migration 0000_base: PostGIS and the restricted schema for person-level records (granted to onemap_privileged only).
CREATE EXTENSION IF NOT EXISTS postgis;

CREATE SCHEMA IF NOT EXISTS restricted;
