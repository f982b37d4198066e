-- The lifecycle step, checked and recorded in the append-only history by the database
-- (SQLSTATE OM409 for an illegal transition).
SELECT 1 FROM event_set_status(:id, :status, :actor, :note)
