-- Revoke every active token of user :uid except :keep_id (NULL: all); the count back.
WITH r AS (
    UPDATE api_tokens SET revoked_at = now()
     WHERE user_id = :uid AND revoked_at IS NULL AND id IS DISTINCT FROM :keep_id
    RETURNING id)
SELECT count(*) FROM r
