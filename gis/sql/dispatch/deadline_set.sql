UPDATE priority_deadline SET minutes = :minutes, updated_at = now(), updated_by = :actor
 WHERE priority = :priority
RETURNING priority, minutes, updated_at, updated_by
