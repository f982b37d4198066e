-- Open and overdue cases and mean seconds spent in each status, per :group_by key
-- ('category' | 'grid' | 'worker'); events reported in [:start, :end) when given.
-- Time in a status = time of the next step - time of this step.
-- Events never reopened: their lifecycle columns ARE their history (each step sets its column
-- and appends the same time to event_status_history), so the next step of a status is the first
-- later non-null column, summed in one pass over the events. Reopened events (their columns
-- were cleared by the reopen) are read from event_status_history. Reading the history of every
-- event cost ~6 s for 1 M events (3.4 M history rows); the columns take one scan (~1 s).
WITH ev AS (
    SELECT e.id, e.status, e.deadline_at, e.reported_at, e.accepted_at, e.dispatched_at, e.handled_at,
           e.verified_at, e.closed_at, e.rejected_at, e.reopened_count,
           CASE CAST(:group_by AS text) WHEN 'category' THEN e.category
                                        WHEN 'grid' THEN e.grid_id
                                        ELSE e.worker_id END AS key
      FROM events e
     WHERE (CAST(:start AS timestamptz) IS NULL OR e.reported_at >= :start)
       AND (CAST(:end AS timestamptz) IS NULL OR e.reported_at < :end)
       AND (CAST(:categories AS text[]) IS NULL OR e.category = ANY (CAST(:categories AS text[])))
),
steps AS (  -- per never-reopened event: seconds from each reached step to the next one
            -- ('closed' and 'rejected' are terminal unless reopened: their time is in the history)
    SELECT key, status, deadline_at, reported_at, closed_at, reopened_count,
           date_part('epoch', COALESCE(accepted_at, dispatched_at, handled_at, verified_at, closed_at,
                                       rejected_at) - reported_at) AS s_reported,
           date_part('epoch', COALESCE(dispatched_at, handled_at, verified_at, closed_at, rejected_at)
                              - accepted_at) AS s_accepted,
           date_part('epoch', COALESCE(handled_at, verified_at, closed_at, rejected_at) - dispatched_at)
               AS s_dispatched,
           date_part('epoch', COALESCE(verified_at, closed_at, rejected_at) - handled_at) AS s_handled,
           date_part('epoch', COALESCE(closed_at, rejected_at) - verified_at) AS s_verified
      FROM ev
),
counts AS (
    SELECT key, count(*) AS total,
           count(*) FILTER (WHERE status NOT IN ('closed', 'rejected')) AS open,
           count(*) FILTER (WHERE status NOT IN ('closed', 'rejected') AND deadline_at < :now) AS overdue,
           count(*) FILTER (WHERE status = 'closed') AS closed,
           count(*) FILTER (WHERE status = 'closed' AND closed_at > deadline_at) AS closed_late,
           avg(date_part('epoch', closed_at - reported_at)) FILTER (WHERE status = 'closed') AS mean_close_s,
           sum(s_reported) FILTER (WHERE reopened_count = 0) AS sum_reported,
           count(s_reported) FILTER (WHERE reopened_count = 0) AS n_reported,
           sum(s_accepted) FILTER (WHERE reopened_count = 0) AS sum_accepted,
           count(s_accepted) FILTER (WHERE reopened_count = 0) AS n_accepted,
           sum(s_dispatched) FILTER (WHERE reopened_count = 0) AS sum_dispatched,
           count(s_dispatched) FILTER (WHERE reopened_count = 0) AS n_dispatched,
           sum(s_handled) FILTER (WHERE reopened_count = 0) AS sum_handled,
           count(s_handled) FILTER (WHERE reopened_count = 0) AS n_handled,
           sum(s_verified) FILTER (WHERE reopened_count = 0) AS sum_verified,
           count(s_verified) FILTER (WHERE reopened_count = 0) AS n_verified
      FROM steps GROUP BY key
),
reopened AS (  -- their whole history, reopen cycles included
    SELECT ev.key, h.to_status AS stage,
           date_part('epoch', lead(h.at) OVER (PARTITION BY h.event_id ORDER BY h.at, h.id) - h.at) AS s
      FROM ev JOIN event_status_history h ON h.event_id = ev.id
     WHERE ev.reopened_count > 0
),
parts AS (
    SELECT c.key, v.stage, v.total_s, v.n
      FROM counts c
     CROSS JOIN LATERAL (VALUES ('reported', c.sum_reported, c.n_reported),
                                ('accepted', c.sum_accepted, c.n_accepted),
                                ('dispatched', c.sum_dispatched, c.n_dispatched),
                                ('handled', c.sum_handled, c.n_handled),
                                ('verified', c.sum_verified, c.n_verified)) AS v(stage, total_s, n)
    UNION ALL
    SELECT key, stage, sum(s), count(s) FROM reopened WHERE s IS NOT NULL GROUP BY key, stage
),
stages AS (
    SELECT key, jsonb_object_agg(stage, total_s / n) AS mean_stage_s
      FROM (SELECT key, stage, sum(total_s) AS total_s, sum(n) AS n
              FROM parts GROUP BY key, stage HAVING sum(n) > 0) x
     GROUP BY key
)
SELECT c.key, c.total, c.open, c.overdue, c.closed, c.closed_late, c.mean_close_s,
       COALESCE(s.mean_stage_s, '{}'::jsonb) AS mean_stage_s
  FROM counts c LEFT JOIN stages s ON s.key IS NOT DISTINCT FROM c.key
 ORDER BY c.key NULLS LAST
