-- One audit row (audit_log is append-only).
INSERT INTO audit_log (user_name, role, action, target, client, details)
VALUES (:u, :r, :a, :t, :c, CAST(:d AS jsonb))
