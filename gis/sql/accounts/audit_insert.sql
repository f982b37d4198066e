-- One audit row (audit_log is append-only): who, what, which ids, details.
INSERT INTO audit_log (user_name, role, action, target, client, details, ids)
VALUES (:u, :r, :a, :t, :c, CAST(:d AS jsonb), CAST(:ids AS text[]))
