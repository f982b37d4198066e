-- Open and overdue cases and mean seconds spent in each status, per :group_by key
-- ('category' | 'grid' | 'worker'); events reported in [:start, :end) when given.
-- Time in a status = next history entry's time - this entry's time (from event_status_history).
WITH ev AS MATERIALIZED (
    SELECT e.id, e.status, e.deadline_at, e.reported_at, e.closed_at,
           CASE CAST(:group_by AS text) WHEN 'category' THEN e.category
                                        WHEN 'grid' THEN e.grid_id
                                        ELSE e.worker_id END AS key
      FROM events e
     WHERE (CAST(:start AS timestamptz) IS NULL OR e.reported_at >= :start)
       AND (CAST(:end AS timestamptz) IS NULL OR e.reported_at < :end)
       AND (CAST(:categories AS text[]) IS NULL OR e.category = ANY (CAST(:categories AS text[])))
),
counts AS (
    SELECT key, count(*) AS total,
           count(*) FILTER (WHERE status NOT IN ('closed', 'rejected')) AS open,
           count(*) FILTER (WHERE status NOT IN ('closed', 'rejected') AND deadline_at < :now) AS overdue,
           count(*) FILTER (WHERE status = 'closed') AS closed,
           count(*) FILTER (WHERE status = 'closed' AND closed_at > deadline_at) AS closed_late,
           avg(extract(epoch FROM closed_at - reported_at)) FILTER (WHERE status = 'closed') AS mean_close_s
      FROM ev GROUP BY key
),
dur AS (
    SELECT ev.key, h.to_status AS stage,
           extract(epoch FROM lead(h.at) OVER (PARTITION BY h.event_id ORDER BY h.at, h.id) - h.at) AS s
      FROM ev JOIN event_status_history h ON h.event_id = ev.id
),
stages AS (
    SELECT key, jsonb_object_agg(stage, mean_s) AS mean_stage_s
      FROM (SELECT key, stage, avg(s) AS mean_s FROM dur WHERE s IS NOT NULL GROUP BY key, stage) x
     GROUP BY key
)
SELECT c.key, c.total, c.open, c.overdue, c.closed, c.closed_late, c.mean_close_s,
       COALESCE(s.mean_stage_s, '{}'::jsonb) AS mean_stage_s
  FROM counts c LEFT JOIN stages s ON s.key IS NOT DISTINCT FROM c.key
 ORDER BY c.key NULLS LAST
