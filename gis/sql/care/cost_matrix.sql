-- Walking seconds between every pair of :vids over road_edges (undirected; unreachable pairs
-- have no row).
SELECT start_vid, end_vid, agg_cost
  FROM pgr_dijkstraCostMatrix('SELECT id, source, target, walk_s AS cost FROM road_edges',
                              CAST(:vids AS bigint[]), false)
