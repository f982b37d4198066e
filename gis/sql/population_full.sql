-- Population per building / grid cell / community, person-level counts (privileged roles only).
SELECT 'building' AS level, building_id AS id, name, total, registered, floating, age_60_plus, age_80_plus, children_under_14, special_care, '{}'::text[] AS suppressed
  FROM restricted.population_by_building_full
 WHERE CAST(:level AS text) = 'building' AND (CAST(:id AS text) IS NULL OR building_id = :id)
UNION ALL
SELECT 'grid' AS level, grid_id AS id, name, total, registered, floating, age_60_plus, age_80_plus, children_under_14, special_care, '{}'::text[] AS suppressed
  FROM restricted.population_by_grid_full
 WHERE CAST(:level AS text) = 'grid' AND (CAST(:id AS text) IS NULL OR grid_id = :id)
UNION ALL
SELECT 'community' AS level, community_id AS id, name, total, registered, floating, age_60_plus, age_80_plus, children_under_14, special_care, '{}'::text[] AS suppressed
  FROM restricted.population_by_community_full
 WHERE CAST(:level AS text) = 'community' AND (CAST(:id AS text) IS NULL OR community_id = :id)
ORDER BY id
