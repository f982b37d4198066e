-- Suppressed households and overdue counts per community and category ('*': the community;
-- community_id NULL: the district) at :at (care_by_community(), migration 0009_civil).
SELECT c.community_id, cm.name, c.category, c.households, c.overdue
  FROM care_by_community(:at) c LEFT JOIN communities cm ON cm.id = c.community_id
