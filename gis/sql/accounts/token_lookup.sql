-- The active user holding the token hash :h; stale = last_used_at older than a minute.
SELECT name, role, privileged,
       (last_used_at IS NULL OR last_used_at < now() - interval '1 minute') AS stale
  FROM api_users
 WHERE token_hash = :h AND revoked_at IS NULL
