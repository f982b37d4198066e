-- Is there an active admin account?
SELECT 1 FROM api_users WHERE role = 'admin' AND revoked_at IS NULL LIMIT 1
