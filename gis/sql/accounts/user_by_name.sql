-- One user by name: id, role, privileged, password hash, revoked?
SELECT id, role, privileged, password_hash, revoked_at IS NOT NULL AS revoked
  FROM api_users WHERE name = :n
