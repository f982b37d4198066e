-- One failed login (and prune what left the window long ago).
WITH pruned AS (DELETE FROM login_failures WHERE at < now() - interval '1 day')
INSERT INTO login_failures (user_name, client) VALUES (:n, :c)
