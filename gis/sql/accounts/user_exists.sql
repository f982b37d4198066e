-- Is there a user named :n (active or revoked)?
SELECT 1 FROM api_users WHERE name = :n
