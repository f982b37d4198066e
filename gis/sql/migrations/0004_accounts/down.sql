-- Migration 0004_accounts: downgrade (each user keeps its newest token).
ALTER TABLE audit_log DROP COLUMN ids;
DROP TABLE login_failures, api_user_devices;
ALTER TABLE api_users ADD COLUMN token_hash text, ADD COLUMN token_prefix text, ADD COLUMN last_used_at timestamptz;
UPDATE api_users u SET token_hash = t.token_hash, token_prefix = t.token_prefix, last_used_at = t.last_used_at
  FROM (SELECT DISTINCT ON (user_id) * FROM api_tokens ORDER BY user_id, id DESC) t
 WHERE t.user_id = u.id;
UPDATE api_users SET token_hash = encode(sha256(convert_to(name || clock_timestamp()::text, 'UTF8')), 'hex'),
                     token_prefix = 'om_????', revoked_at = COALESCE(revoked_at, now())
 WHERE token_hash IS NULL;
ALTER TABLE api_users ALTER COLUMN token_hash SET NOT NULL, ALTER COLUMN token_prefix SET NOT NULL,
    ADD UNIQUE (token_hash), ADD CHECK (token_hash ~ '^[0-9a-f]{64}$');
DROP TABLE api_tokens;
ALTER TABLE api_users DROP COLUMN event_source, DROP COLUMN password_hash;
GRANT INSERT, UPDATE ON api_users TO onemap_api;
