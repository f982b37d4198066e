-- Migration 0010_population_hidden down: the views compute the suppression per query again
-- (migration 0006's definitions), then the stored set goes.

CREATE OR REPLACE VIEW population_by_building AS
WITH hidden AS MATERIALIZED (
    SELECT h.id, array_agg(h.measure) AS hm
      FROM population_complementary((SELECT jsonb_agg(to_jsonb(c)) FROM restricted.population_cells c)) h
     WHERE h.lvl = 'building'
     GROUP BY h.id
)
SELECT f.building_id, f.name,
       CASE WHEN 'total' = ANY (x.hm) THEN NULL ELSE f.total END AS total,
       CASE WHEN 'registered' = ANY (x.hm) THEN NULL ELSE f.registered END AS registered,
       CASE WHEN 'floating' = ANY (x.hm) THEN NULL ELSE f.floating END AS floating,
       CASE WHEN 'age_60_plus' = ANY (x.hm) THEN NULL ELSE f.age_60_plus END AS age_60_plus,
       CASE WHEN 'age_80_plus' = ANY (x.hm) THEN NULL ELSE f.age_80_plus END AS age_80_plus,
       CASE WHEN 'children_under_14' = ANY (x.hm) THEN NULL ELSE f.children_under_14 END AS children_under_14,
       CASE WHEN 'special_care' = ANY (x.hm) THEN NULL ELSE f.special_care END AS special_care,
       ARRAY(SELECT u.m FROM unnest(ARRAY['total', 'registered', 'floating', 'age_60_plus', 'age_80_plus', 'children_under_14', 'special_care']) WITH ORDINALITY AS u(m, o)
              WHERE u.m = ANY (x.hm) ORDER BY u.o) AS suppressed,
       f.geom
  FROM restricted.population_by_building_full f
  LEFT JOIN hidden x0 ON x0.id = f.building_id
  CROSS JOIN LATERAL (SELECT coalesce(x0.hm, '{}'::text[]) AS hm) x;

CREATE OR REPLACE VIEW population_by_grid AS
WITH hidden AS MATERIALIZED (
    SELECT h.id, array_agg(h.measure) AS hm
      FROM population_complementary((SELECT jsonb_agg(to_jsonb(c)) FROM restricted.population_cells c)) h
     WHERE h.lvl = 'grid'
     GROUP BY h.id
)
SELECT f.grid_id, f.name,
       CASE WHEN 'total' = ANY (x.hm) THEN NULL ELSE f.total END AS total,
       CASE WHEN 'registered' = ANY (x.hm) THEN NULL ELSE f.registered END AS registered,
       CASE WHEN 'floating' = ANY (x.hm) THEN NULL ELSE f.floating END AS floating,
       CASE WHEN 'age_60_plus' = ANY (x.hm) THEN NULL ELSE f.age_60_plus END AS age_60_plus,
       CASE WHEN 'age_80_plus' = ANY (x.hm) THEN NULL ELSE f.age_80_plus END AS age_80_plus,
       CASE WHEN 'children_under_14' = ANY (x.hm) THEN NULL ELSE f.children_under_14 END AS children_under_14,
       CASE WHEN 'special_care' = ANY (x.hm) THEN NULL ELSE f.special_care END AS special_care,
       ARRAY(SELECT u.m FROM unnest(ARRAY['total', 'registered', 'floating', 'age_60_plus', 'age_80_plus', 'children_under_14', 'special_care']) WITH ORDINALITY AS u(m, o)
              WHERE u.m = ANY (x.hm) ORDER BY u.o) AS suppressed,
       f.geom
  FROM restricted.population_by_grid_full f
  LEFT JOIN hidden x0 ON x0.id = f.grid_id
  CROSS JOIN LATERAL (SELECT coalesce(x0.hm, '{}'::text[]) AS hm) x;

CREATE OR REPLACE VIEW population_by_community AS
WITH hidden AS MATERIALIZED (
    SELECT h.id, array_agg(h.measure) AS hm
      FROM population_complementary((SELECT jsonb_agg(to_jsonb(c)) FROM restricted.population_cells c)) h
     WHERE h.lvl = 'community'
     GROUP BY h.id
)
SELECT f.community_id, f.name,
       CASE WHEN 'total' = ANY (x.hm) THEN NULL ELSE f.total END AS total,
       CASE WHEN 'registered' = ANY (x.hm) THEN NULL ELSE f.registered END AS registered,
       CASE WHEN 'floating' = ANY (x.hm) THEN NULL ELSE f.floating END AS floating,
       CASE WHEN 'age_60_plus' = ANY (x.hm) THEN NULL ELSE f.age_60_plus END AS age_60_plus,
       CASE WHEN 'age_80_plus' = ANY (x.hm) THEN NULL ELSE f.age_80_plus END AS age_80_plus,
       CASE WHEN 'children_under_14' = ANY (x.hm) THEN NULL ELSE f.children_under_14 END AS children_under_14,
       CASE WHEN 'special_care' = ANY (x.hm) THEN NULL ELSE f.special_care END AS special_care,
       ARRAY(SELECT u.m FROM unnest(ARRAY['total', 'registered', 'floating', 'age_60_plus', 'age_80_plus', 'children_under_14', 'special_care']) WITH ORDINALITY AS u(m, o)
              WHERE u.m = ANY (x.hm) ORDER BY u.o) AS suppressed,
       f.geom
  FROM restricted.population_by_community_full f
  LEFT JOIN hidden x0 ON x0.id = f.community_id
  CROSS JOIN LATERAL (SELECT coalesce(x0.hm, '{}'::text[]) AS hm) x;

DROP TRIGGER communities_population_hidden_stale ON communities;
DROP TRIGGER grid_cells_population_hidden_stale ON grid_cells;
DROP TRIGGER buildings_population_hidden_stale ON buildings;
DROP TRIGGER persons_population_hidden_stale ON restricted.persons;
DROP FUNCTION population_hidden_mark_stale();
DROP FUNCTION population_hidden_refresh();
DROP VIEW restricted.population_hidden_now;
DROP TABLE restricted.population_hidden_state;
DROP TABLE restricted.population_hidden;
