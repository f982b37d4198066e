-- Events loader, step 1: the staged events' points (EPSG:4548) with a GiST index, so that the
-- location join below drives from the few polygons (each probes the points' index and tests its
-- points with one prepared geometry) instead of running locate_point()'s four index lookups per
-- event. Temp table, dropped at commit.
CREATE TEMP TABLE stg_events_pt ON COMMIT DROP AS
SELECT id, ST_SetSRID(ST_MakePoint(x, y), 4548) AS pt
  FROM stg_events
