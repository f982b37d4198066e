-- Migration 0001_overlays: locate_point(): building / grid cell / community of a point.
-- Building / grid cell / community containing a point (EPSG:4548). Used by the loaders
-- (set-based) and by the events insert trigger (single rows), so both agree.
CREATE FUNCTION locate_point(p geometry)
RETURNS TABLE (building_id text, grid_id text, community_id text)
LANGUAGE sql STABLE AS $$
    SELECT
        (SELECT b.id FROM buildings b WHERE ST_Intersects(b.geom_4548, p) ORDER BY b.id LIMIT 1),
        (SELECT g.id FROM grid_cells g WHERE ST_Intersects(g.geom_4548, p) ORDER BY g.id LIMIT 1),
        COALESCE(
            (SELECT c.id FROM communities c WHERE ST_Intersects(c.geom_4548, p) ORDER BY c.id LIMIT 1),
            (SELECT g.community_id FROM grid_cells g WHERE ST_Intersects(g.geom_4548, p)
              ORDER BY g.id LIMIT 1))
$$;
