-- device id -> worker id of the given devices that are active
SELECT id, worker_id FROM devices WHERE id = ANY(:ids) AND active
