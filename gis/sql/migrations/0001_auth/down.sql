-- Migration 0001_auth: downgrade.
DROP TABLE IF EXISTS audit_log, api_users;
DROP FUNCTION IF EXISTS audit_log_append_only();
