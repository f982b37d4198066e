-- Events loader, step 2: every staged event with its deadline and location, into a temp table
-- (the live tables are only read). The location is what locate_point() gives, set-based: the
-- smallest building id and grid cell id whose polygon intersects the point, the smallest
-- community id, else the community of that grid cell (tests/test_gis_loaders.py compares the two).
CREATE TEMP TABLE stg_events_ready ON COMMIT DROP AS
WITH in_building AS (
    SELECT p.id, min(b.id) AS building_id
      FROM buildings b JOIN stg_events_pt p ON ST_Intersects(b.geom_4548, p.pt)
     GROUP BY p.id
), in_grid AS (
    SELECT p.id, min(g.id) AS grid_id
      FROM grid_cells g JOIN stg_events_pt p ON ST_Intersects(g.geom_4548, p.pt)
     GROUP BY p.id
), in_community AS (
    SELECT p.id, min(c.id) AS community_id
      FROM communities c JOIN stg_events_pt p ON ST_Intersects(c.geom_4548, p.pt)
     GROUP BY p.id
)
SELECT s.id, s.category, s.priority, s.source, s.description, s.status, s.worker_id,
       s.reported_at, s.accepted_at, s.dispatched_at, s.en_route_at, s.on_scene_at,
       s.handled_at, s.verified_at, s.closed_at, s.rejected_at,
       s.reported_at + make_interval(secs => c.deadline_hours * 3600) AS deadline_at,
       ib.building_id, ig.grid_id, COALESCE(ic.community_id, g.community_id) AS community_id,
       ST_Transform(p.pt, 4490) AS geom
  FROM stg_events s
  JOIN stg_events_pt p ON p.id = s.id
  JOIN event_category c ON c.code = s.category
  LEFT JOIN in_building ib ON ib.id = s.id
  LEFT JOIN in_grid ig ON ig.id = s.id
  LEFT JOIN in_community ic ON ic.id = s.id
  LEFT JOIN grid_cells g ON g.id = ig.grid_id
