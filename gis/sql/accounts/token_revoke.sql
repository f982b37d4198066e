-- Revoke one token (logout); the user's name back, no row when unknown or already revoked.
UPDATE api_tokens t SET revoked_at = now()
  FROM api_users u
 WHERE t.token_hash = :h AND t.revoked_at IS NULL AND u.id = t.user_id
RETURNING u.name
