-- Migration 0007_access, down.
DROP FUNCTION IF EXISTS access_sites(text, double precision, integer, integer);
DROP FUNCTION IF EXISTS access_by_community(text, double precision);
DROP FUNCTION IF EXISTS access_publish(integer, integer[]);
DROP FUNCTION IF EXISTS access_buildings(text);
DROP FUNCTION IF EXISTS access_vertex_m(text);
DROP FUNCTION IF EXISTS access_speeds();
DROP VIEW IF EXISTS building_road_vertex;
DROP TABLE IF EXISTS facilities;
DROP TABLE IF EXISTS facility_kind;
