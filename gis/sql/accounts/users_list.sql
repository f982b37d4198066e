-- Every user, by name (token prefixes only).
SELECT name, role, privileged, token_prefix, created_at, revoked_at, last_used_at
  FROM api_users
 ORDER BY name
