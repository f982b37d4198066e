-- Stored live-stream messages after :last_id, oldest first (at most :limit).
SELECT id, type, (payload || jsonb_build_object('stream_id', id))::text AS payload
  FROM stream_messages
 WHERE id > :last_id
 ORDER BY id
 LIMIT :limit
