UPDATE events SET worker_id = :worker_id WHERE id = :id
