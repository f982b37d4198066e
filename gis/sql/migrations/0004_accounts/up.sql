-- Migration 0004_accounts: passwords, expiring tokens (many per user), device bindings,
-- failed-login counting and audit ids. Runs as the schema owner after 0003_least_privilege.

ALTER TABLE api_users
    -- argon2id (PHC string); NULL: no password login (device accounts, token-only users)
    ADD COLUMN password_hash text,
    -- the `source` of events this account reports (device accounts; NULL: grid_worker)
    ADD COLUMN event_source text CHECK (event_source IN ('grid_worker', 'resident', 'camera'));

CREATE TABLE api_tokens (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       bigint NOT NULL REFERENCES api_users (id),
    -- hex SHA-256 of the bearer token; the token itself is never stored
    token_hash    text NOT NULL UNIQUE CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    token_prefix  text NOT NULL,
    -- login (POST /auth/login), device (onemap users token), initial (onemap users add)
    kind          text NOT NULL DEFAULT 'initial' CHECK (kind IN ('login', 'device', 'initial')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    revoked_at    timestamptz,
    last_used_at  timestamptz
);
CREATE INDEX api_tokens_user_id_idx ON api_tokens (user_id);

-- The tokens of 0001_auth become tokens of their users (no expiry: rotate them).
INSERT INTO api_tokens (user_id, token_hash, token_prefix, kind, created_at, revoked_at, last_used_at)
SELECT id, token_hash, token_prefix, 'initial', created_at, revoked_at, last_used_at FROM api_users;
ALTER TABLE api_users DROP COLUMN token_hash, DROP COLUMN token_prefix, DROP COLUMN last_used_at;

-- A device account may post fixes only for these device ids.
CREATE TABLE api_user_devices (
    user_id    bigint NOT NULL REFERENCES api_users (id),
    device_id  text NOT NULL CHECK (device_id ~ '^[A-Za-z0-9_.-]{1,40}$'),
    PRIMARY KEY (user_id, device_id)
);

-- Failed logins of the last minutes (per user name and per client address); rows older than
-- the window are pruned by the API.
CREATE TABLE login_failures (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    user_name  text NOT NULL,
    client     text
);
CREATE INDEX login_failures_user_name_at_idx ON login_failures (user_name, at);
CREATE INDEX login_failures_client_at_idx ON login_failures (client, at);

-- Which rows a write touched (event ids, device ids, user names).
ALTER TABLE audit_log ADD COLUMN ids text[] NOT NULL DEFAULT '{}';

-- onemap_api: log in (tokens), log out (revoke), last use; read bindings; count failures.
-- Accounts themselves are written only by `onemap users` (the owner): the API reads them.
REVOKE INSERT, UPDATE ON api_users FROM onemap_api;
GRANT SELECT, INSERT, UPDATE (revoked_at, last_used_at) ON api_tokens TO onemap_api;
GRANT SELECT ON api_user_devices TO onemap_api;
GRANT SELECT, INSERT, DELETE ON login_failures TO onemap_api;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO onemap_api;
