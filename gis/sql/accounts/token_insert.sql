-- A new token of user :uid; the token itself is never stored, only its SHA-256 and 7 characters.
INSERT INTO api_tokens (user_id, token_hash, token_prefix, kind, expires_at)
VALUES (:uid, :h, :pre, :kind, now() + make_interval(secs => CAST(:ttl AS float8)))
RETURNING id, expires_at
