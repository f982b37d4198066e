-- Every user by name: the newest active token's prefix and expiry, last use of any token, devices.
SELECT u.name, u.role, u.privileged, u.password_hash IS NOT NULL AS has_password,
       t.token_prefix, u.created_at, u.revoked_at,
       t.expires_at,
       (SELECT max(last_used_at) FROM api_tokens x WHERE x.user_id = u.id) AS last_used_at,
       (SELECT count(*) FROM api_tokens x WHERE x.user_id = u.id AND x.revoked_at IS NULL
           AND (x.expires_at IS NULL OR x.expires_at > now())) AS active_tokens,
       ARRAY(SELECT d.device_id FROM api_user_devices d WHERE d.user_id = u.id ORDER BY 1) AS devices
  FROM api_users u
  LEFT JOIN LATERAL (
      SELECT token_prefix, expires_at FROM api_tokens x
       WHERE x.user_id = u.id AND x.revoked_at IS NULL AND (x.expires_at IS NULL OR x.expires_at > now())
       ORDER BY x.id DESC LIMIT 1) t ON true
 ORDER BY u.name
