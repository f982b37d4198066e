-- Failed logins within the window for user :n and from client :c, and when the oldest of each
-- leaves the window (seconds from now).
SELECT count(*) FILTER (WHERE user_name = :n) AS by_user,
       count(*) FILTER (WHERE client = :c) AS by_client,
       COALESCE(EXTRACT(EPOCH FROM min(at) FILTER (WHERE user_name = :n)
                 + make_interval(secs => CAST(:window AS float8)) - now()), 0) AS user_wait_s,
       COALESCE(EXTRACT(EPOCH FROM min(at) FILTER (WHERE client = :c)
                 + make_interval(secs => CAST(:window AS float8)) - now()), 0) AS client_wait_s
  FROM login_failures
 WHERE at > now() - make_interval(secs => CAST(:window AS float8))
   AND (user_name = :n OR client = :c)
