-- Migration 0006_privacy down: primary suppression only (the 0001_overlays definitions).

CREATE OR REPLACE VIEW population_by_building AS
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

CREATE OR REPLACE VIEW population_by_grid AS
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

CREATE OR REPLACE VIEW population_by_community AS
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

DROP FUNCTION population_complementary(jsonb);
DROP VIEW restricted.population_cells;
