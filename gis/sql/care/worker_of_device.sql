-- The worker a device belongs to.
SELECT worker_id FROM devices WHERE id = :device AND active
