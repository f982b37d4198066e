-- Migration 0001_overlays: population views: restricted *_full views and public views suppressing counts below 5.
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

CREATE VIEW restricted.population_by_building_full AS
SELECT s.id AS building_id, s.name,
       count(f.person_id)::integer AS total,
       count(*) FILTER (WHERE f.registered)::integer AS registered,
       count(*) FILTER (WHERE f.floating)::integer AS floating,
       count(*) FILTER (WHERE f.age_60_plus)::integer AS age_60_plus,
       count(*) FILTER (WHERE f.age_80_plus)::integer AS age_80_plus,
       count(*) FILTER (WHERE f.children_under_14)::integer AS children_under_14,
       count(*) FILTER (WHERE f.special_care)::integer AS special_care,
       s.geom
  FROM (SELECT id, name, geom FROM buildings) s
  LEFT JOIN restricted.population_person_flags f ON f.building_id = s.id
 GROUP BY s.id, s.name, s.geom;

-- Counts below 5 are NULL (and listed in `suppressed`). registered/floating sum to total, so
-- when either is small both are suppressed (otherwise total - other would reveal it).
CREATE VIEW population_by_building AS
SELECT f.building_id, f.name,
       CASE WHEN f.total < 5 THEN NULL ELSE f.total END AS total,
       CASE WHEN f.total < 5 OR f.registered < 5 OR f.floating < 5 THEN NULL ELSE f.registered END
           AS registered,
       CASE WHEN f.total < 5 OR f.registered < 5 OR f.floating < 5 THEN NULL ELSE f.floating END
           AS floating,
       CASE WHEN f.age_60_plus < 5 THEN NULL ELSE f.age_60_plus END AS age_60_plus,
       CASE WHEN f.age_80_plus < 5 THEN NULL ELSE f.age_80_plus END AS age_80_plus,
       CASE WHEN f.children_under_14 < 5 THEN NULL ELSE f.children_under_14 END AS children_under_14,
       CASE WHEN f.special_care < 5 THEN NULL ELSE f.special_care END AS special_care,
       (CASE WHEN f.total < 5 THEN ARRAY['total'] ELSE '{}'::text[] END ||
        CASE WHEN f.total < 5 OR f.registered < 5 OR f.floating < 5
             THEN ARRAY['registered', 'floating'] ELSE '{}'::text[] END ||
           CASE WHEN f.age_60_plus < 5 THEN ARRAY['age_60_plus'] ELSE '{}'::text[] END ||
           CASE WHEN f.age_80_plus < 5 THEN ARRAY['age_80_plus'] ELSE '{}'::text[] END ||
           CASE WHEN f.children_under_14 < 5 THEN ARRAY['children_under_14'] ELSE '{}'::text[] END ||
           CASE WHEN f.special_care < 5 THEN ARRAY['special_care'] ELSE '{}'::text[] END) AS suppressed,
       f.geom
  FROM restricted.population_by_building_full f;

CREATE VIEW restricted.population_by_grid_full AS
SELECT s.id AS grid_id, s.name,
       count(f.person_id)::integer AS total,
       count(*) FILTER (WHERE f.registered)::integer AS registered,
       count(*) FILTER (WHERE f.floating)::integer AS floating,
       count(*) FILTER (WHERE f.age_60_plus)::integer AS age_60_plus,
       count(*) FILTER (WHERE f.age_80_plus)::integer AS age_80_plus,
       count(*) FILTER (WHERE f.children_under_14)::integer AS children_under_14,
       count(*) FILTER (WHERE f.special_care)::integer AS special_care,
       s.geom
  FROM (SELECT id, name, geom FROM grid_cells) s
  LEFT JOIN restricted.population_person_flags f ON f.grid_id = s.id
 GROUP BY s.id, s.name, s.geom;

-- Counts below 5 are NULL (and listed in `suppressed`). registered/floating sum to total, so
-- when either is small both are suppressed (otherwise total - other would reveal it).
CREATE VIEW population_by_grid AS
SELECT f.grid_id, f.name,
       CASE WHEN f.total < 5 THEN NULL ELSE f.total END AS total,
       CASE WHEN f.total < 5 OR f.registered < 5 OR f.floating < 5 THEN NULL ELSE f.registered END
           AS registered,
       CASE WHEN f.total < 5 OR f.registered < 5 OR f.floating < 5 THEN NULL ELSE f.floating END
           AS floating,
       CASE WHEN f.age_60_plus < 5 THEN NULL ELSE f.age_60_plus END AS age_60_plus,
       CASE WHEN f.age_80_plus < 5 THEN NULL ELSE f.age_80_plus END AS age_80_plus,
       CASE WHEN f.children_under_14 < 5 THEN NULL ELSE f.children_under_14 END AS children_under_14,
       CASE WHEN f.special_care < 5 THEN NULL ELSE f.special_care END AS special_care,
       (CASE WHEN f.total < 5 THEN ARRAY['total'] ELSE '{}'::text[] END ||
        CASE WHEN f.total < 5 OR f.registered < 5 OR f.floating < 5
             THEN ARRAY['registered', 'floating'] ELSE '{}'::text[] END ||
           CASE WHEN f.age_60_plus < 5 THEN ARRAY['age_60_plus'] ELSE '{}'::text[] END ||
           CASE WHEN f.age_80_plus < 5 THEN ARRAY['age_80_plus'] ELSE '{}'::text[] END ||
           CASE WHEN f.children_under_14 < 5 THEN ARRAY['children_under_14'] ELSE '{}'::text[] END ||
           CASE WHEN f.special_care < 5 THEN ARRAY['special_care'] ELSE '{}'::text[] END) AS suppressed,
       f.geom
  FROM restricted.population_by_grid_full f;

CREATE VIEW restricted.population_by_community_full AS
SELECT s.id AS community_id, s.name,
       count(f.person_id)::integer AS total,
       count(*) FILTER (WHERE f.registered)::integer AS registered,
       count(*) FILTER (WHERE f.floating)::integer AS floating,
       count(*) FILTER (WHERE f.age_60_plus)::integer AS age_60_plus,
       count(*) FILTER (WHERE f.age_80_plus)::integer AS age_80_plus,
       count(*) FILTER (WHERE f.children_under_14)::integer AS children_under_14,
       count(*) FILTER (WHERE f.special_care)::integer AS special_care,
       s.geom
  FROM (SELECT id, name, geom FROM communities) s
  LEFT JOIN restricted.population_person_flags f ON f.community_id = s.id
 GROUP BY s.id, s.name, s.geom;

-- Counts below 5 are NULL (and listed in `suppressed`). registered/floating sum to total, so
-- when either is small both are suppressed (otherwise total - other would reveal it).
CREATE VIEW population_by_community AS
SELECT f.community_id, f.name,
       CASE WHEN f.total < 5 THEN NULL ELSE f.total END AS total,
       CASE WHEN f.total < 5 OR f.registered < 5 OR f.floating < 5 THEN NULL ELSE f.registered END
           AS registered,
       CASE WHEN f.total < 5 OR f.registered < 5 OR f.floating < 5 THEN NULL ELSE f.floating END
           AS floating,
       CASE WHEN f.age_60_plus < 5 THEN NULL ELSE f.age_60_plus END AS age_60_plus,
       CASE WHEN f.age_80_plus < 5 THEN NULL ELSE f.age_80_plus END AS age_80_plus,
       CASE WHEN f.children_under_14 < 5 THEN NULL ELSE f.children_under_14 END AS children_under_14,
       CASE WHEN f.special_care < 5 THEN NULL ELSE f.special_care END AS special_care,
       (CASE WHEN f.total < 5 THEN ARRAY['total'] ELSE '{}'::text[] END ||
        CASE WHEN f.total < 5 OR f.registered < 5 OR f.floating < 5
             THEN ARRAY['registered', 'floating'] ELSE '{}'::text[] END ||
           CASE WHEN f.age_60_plus < 5 THEN ARRAY['age_60_plus'] ELSE '{}'::text[] END ||
           CASE WHEN f.age_80_plus < 5 THEN ARRAY['age_80_plus'] ELSE '{}'::text[] END ||
           CASE WHEN f.children_under_14 < 5 THEN ARRAY['children_under_14'] ELSE '{}'::text[] END ||
           CASE WHEN f.special_care < 5 THEN ARRAY['special_care'] ELSE '{}'::text[] END) AS suppressed,
       f.geom
  FROM restricted.population_by_community_full f;
