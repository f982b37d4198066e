SELECT priority, minutes, updated_at, updated_by FROM priority_deadline ORDER BY priority
