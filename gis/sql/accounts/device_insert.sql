-- Bind device ids to a (device) account.
INSERT INTO api_user_devices (user_id, device_id)
SELECT :uid, d FROM unnest(CAST(:devices AS text[])) AS d
ON CONFLICT DO NOTHING
