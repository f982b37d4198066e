SELECT from_status, to_status, at, actor, note, recorded_at
  FROM event_status_history
 WHERE event_id = :id
 ORDER BY at, id
