-- The oldest stored live-stream message id (NULL when none).
SELECT min(id) FROM stream_messages
