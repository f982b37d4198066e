-- Whether one of the devices (:devices) is a device of the worker.
SELECT 1 FROM devices WHERE worker_id = :worker_id AND id = ANY(CAST(:devices AS text[])) LIMIT 1
