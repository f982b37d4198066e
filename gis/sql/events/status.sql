SELECT status FROM events WHERE id = :id
