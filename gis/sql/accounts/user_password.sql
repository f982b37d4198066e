-- Set (or clear) the password hash of user :uid.
UPDATE api_users SET password_hash = :pw WHERE id = :uid
