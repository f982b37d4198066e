-- Satisfaction (satisfied / respondents) of the surveys whose period (a local date) lies in
-- [:d0, :d1), per community and for the district (community_id NULL, is_total).
SELECT s.community_id, sum(s.respondents)::integer AS respondents, sum(s.satisfied)::integer AS satisfied,
       sum(s.satisfied)::double precision / nullif(sum(s.respondents), 0) AS satisfaction,
       GROUPING(s.community_id) = 1 AS is_total
  FROM surveys s
 WHERE s.period >= :d0 AND s.period < :d1
   AND (CAST(:topic AS text) IS NULL OR s.topic = :topic)
 GROUP BY GROUPING SETS ((s.community_id), ())
