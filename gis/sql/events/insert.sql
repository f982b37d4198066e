-- One new event; no row back when the id exists. Triggers set the deadline, the building/grid/
-- community it lies in, and NOTIFY the live stream.
INSERT INTO events (id, category, priority, source, description, worker_id, reported_at, geom)
VALUES (:id, :category, :priority, :source, :description, :worker_id,
        COALESCE(:reported_at, now()), ST_SetSRID(ST_MakePoint(:lon, :lat), 4490))
ON CONFLICT (id) DO NOTHING
RETURNING id
