-- Suppressed counts per community and group (access_by_community, migration 0007_access).
SELECT c.community_id, c.name, c.grp, c.residents, c.within_5, c.within_10, c.within_15, c.suppressed
  FROM access_by_community(:kind, :speed) c
 WHERE CAST(:community AS text) IS NULL OR c.community_id = :community
 ORDER BY c.community_id, array_position(ARRAY['total', 'age_80_plus', 'disabled', 'low_income'], c.grp)
