-- Migration 0010_population_hidden: the public population views read the hidden counts from
-- restricted.population_hidden_now (the stored set, or computed when stale); columns and
-- values exactly as migration 0006's views. Owned by the owner: onemap_api selects them
-- without access to schema restricted.

CREATE OR REPLACE VIEW population_by_building AS
WITH hidden AS MATERIALIZED (
    SELECT h.id, array_agg(h.measure) AS hm
      FROM restricted.population_hidden_now h
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
      FROM restricted.population_hidden_now h
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
      FROM restricted.population_hidden_now h
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
