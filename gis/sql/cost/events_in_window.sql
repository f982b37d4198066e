-- The planner's estimate of events in a window (EXPLAIN: nothing is counted).
EXPLAIN (FORMAT JSON)
SELECT 1
  FROM events e
 WHERE e.reported_at >= :start AND e.reported_at < :end
   AND (CAST(:categories AS text[]) IS NULL OR e.category = ANY (CAST(:categories AS text[])))
