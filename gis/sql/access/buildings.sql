-- Per building: the nearest facility of :kind and the walking metres to it (NULL: unreachable);
-- optionally one community's buildings only.
SELECT a.building_id, a.community_id, a.facility_id, a.walk_m
  FROM access_buildings(:kind) a
 WHERE CAST(:community AS text) IS NULL OR a.community_id = :community
 ORDER BY a.building_id
