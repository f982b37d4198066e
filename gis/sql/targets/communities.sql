-- Community ids and names (targets per community, the map).
SELECT id AS community_id, name FROM communities ORDER BY id
