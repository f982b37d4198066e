-- A target's event metric over [:t0, :t1) per community and for the district (community_id NULL):
-- events of :categories (NULL: all) reported in the window (n: their count), and of those
-- closed in the window the mean hours reported -> closed and the share closed by deadline_at.
WITH ev AS (
    SELECT e.community_id, e.reported_at, e.closed_at, e.deadline_at
      FROM events e
     WHERE (CAST(:categories AS text[]) IS NULL OR e.category = ANY (CAST(:categories AS text[])))
       AND ((e.reported_at >= :t0 AND e.reported_at < :t1) OR (e.closed_at >= :t0 AND e.closed_at < :t1))
)
SELECT ev.community_id,
       count(*) FILTER (WHERE ev.reported_at >= :t0 AND ev.reported_at < :t1)::integer AS n,
       count(*) FILTER (WHERE ev.closed_at >= :t0 AND ev.closed_at < :t1)::integer AS closed,
       avg(extract(epoch FROM ev.closed_at - ev.reported_at) / 3600.0)
           FILTER (WHERE ev.closed_at >= :t0 AND ev.closed_at < :t1) AS closure_hours,
       avg(CASE WHEN ev.deadline_at IS NULL OR ev.closed_at <= ev.deadline_at THEN 1.0 ELSE 0.0 END)
           FILTER (WHERE ev.closed_at >= :t0 AND ev.closed_at < :t1) AS on_time_rate,
       GROUPING(ev.community_id) = 1 AS is_total
  FROM ev
 GROUP BY GROUPING SETS ((ev.community_id), ())
