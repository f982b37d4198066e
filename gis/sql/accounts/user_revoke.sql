-- Revoke user :n (and so every token it holds); no row when unknown or already revoked.
UPDATE api_users SET revoked_at = now()
 WHERE name = :n AND revoked_at IS NULL
RETURNING id
