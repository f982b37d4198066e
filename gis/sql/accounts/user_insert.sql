-- A new user (its tokens go to api_tokens; the password only as an argon2id hash).
INSERT INTO api_users (name, role, privileged, password_hash, event_source)
VALUES (:n, :r, :p, :pw, :src)
RETURNING id
