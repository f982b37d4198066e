SELECT id, status, worker_id, priority, ST_X(geom) AS lon, ST_Y(geom) AS lat
  FROM events WHERE id = :id
