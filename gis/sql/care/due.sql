-- Person-level (run as onemap_privileged): active households of :worker (NULL: every worker)
-- whose next visit is due before :until: the last completed visit (or enrolment) + interval.
SELECT s.household_id, s.building_id, s.community_id, s.category, s.interval_days, s.worker_id,
       s.last_visit, d.due_at,
       ST_X(pt) AS x, ST_Y(pt) AS y,
       ST_X(ST_Transform(pt, 4490)) AS lon, ST_Y(ST_Transform(pt, 4490)) AS lat
  FROM restricted.care_status s
  JOIN buildings b ON b.id = s.building_id
 CROSS JOIN LATERAL (SELECT coalesce(s.last_visit, s.enrolled_on::timestamptz)
                            + make_interval(days => s.interval_days) AS due_at) d
 CROSS JOIN LATERAL ST_PointOnSurface(b.geom_4548) pt
 WHERE (CAST(:worker AS text) IS NULL OR s.worker_id = :worker)
   AND d.due_at < :until
 ORDER BY d.due_at, s.household_id
