-- A new user; the token itself is never stored, only its SHA-256 and its first 7 characters.
INSERT INTO api_users (name, role, privileged, token_hash, token_prefix)
VALUES (:n, :r, :p, :h, :pre)
