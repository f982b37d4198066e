-- Ranked candidate sites (greedy maximal coverage, access_sites in migration 0007_access).
SELECT s.rank, s.vid AS vertex_id, s.residents_added, s.buildings_added,
       ST_X(ST_Transform(s.geom_4548, 4490)) AS lon, ST_Y(ST_Transform(s.geom_4548, 4490)) AS lat
  FROM access_sites(:kind, :speed, :minutes, :n) s
 ORDER BY s.rank
