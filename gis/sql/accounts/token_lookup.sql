-- The active user holding the token hash :h (token neither revoked nor expired, user not revoked),
-- its bound devices, its event source, the token's expiry; stale = not used for a minute.
SELECT u.name, u.role, u.privileged, u.event_source, t.expires_at,
       (t.last_used_at IS NULL OR t.last_used_at < now() - interval '1 minute') AS stale,
       ARRAY(SELECT d.device_id FROM api_user_devices d WHERE d.user_id = u.id ORDER BY 1) AS devices
  FROM api_tokens t JOIN api_users u ON u.id = t.user_id
 WHERE t.token_hash = :h AND t.revoked_at IS NULL AND u.revoked_at IS NULL
   AND (t.expires_at IS NULL OR t.expires_at > now())
