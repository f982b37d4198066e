-- Migration 0009_civil, down.
DROP FUNCTION IF EXISTS care_by_community(timestamptz);
DROP FUNCTION IF EXISTS care_visit_record(text, text, text, timestamptz, text, text);
DROP VIEW IF EXISTS restricted.care_status;
DROP TABLE IF EXISTS restricted.care_visits, restricted.care_households, restricted.care_category;
DROP TRIGGER IF EXISTS cameras_viewshed_aiu ON cameras;
DROP FUNCTION IF EXISTS cameras_viewshed_trigger();
DROP FUNCTION IF EXISTS camera_viewsheds_rebuild(text[]);
DROP TABLE IF EXISTS camera_viewsheds;
DROP FUNCTION IF EXISTS camera_viewshed_geom(double precision, double precision, double precision,
    double precision, double precision, double precision, double precision, double precision);
DROP FUNCTION IF EXISTS camera_fov_ground(double precision, double precision, double precision,
    double precision, double precision, double precision, double precision, double precision);
DROP TABLE IF EXISTS surveys, event_category_group;
DELETE FROM event_category c WHERE c.code IN ('burglary', 'theft', 'family_conflict')
   AND NOT EXISTS (SELECT 1 FROM events e WHERE e.category = c.code);
