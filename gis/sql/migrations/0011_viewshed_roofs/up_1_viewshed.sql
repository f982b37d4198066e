-- Migration 0011_viewshed_roofs: what a camera mounted high sees (docs/postgis.md "Community
-- targets, camera coverage, care visits"). Two changes to camera_viewshed_geom() of 0009_civil:
--
-- 1. The camera's own building (its footprint holds the camera point) occludes when the eye is
--    above its roof: a lookout camera on a tower sees the ground only past the roof's edge (eye
--    e above ground, roof h: from e / (e - h) times the distance to the edge on). A camera below
--    its own roof (on a wall) still looks out past the building it hangs on, as before.
-- 2. Occluders are the buildings within the camera's horizontal reach and its bearing sector up
--    to the camera itself, not only those meeting the visible ground: when the lowest sight line
--    (pitch - vfov/2) first meets the ground at d_near > 0, a building nearer than d_near still
--    hides the ground behind it.
--
-- The shadow of a convex piece F (relative height h < e) is the convex hull of F and F scaled
-- from the camera c by e / (e - h); that holds when c lies inside F as well (the scaled piece
-- then contains F).
CREATE OR REPLACE FUNCTION camera_viewshed_geom(p_x double precision, p_y double precision,
                                                p_mount double precision, p_heading double precision,
                                                p_hfov double precision, p_pitch double precision,
                                                p_vfov double precision, p_range double precision)
RETURNS geometry LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
    c geometry := ST_SetSRID(ST_MakePoint(p_x, p_y), 4548);
    g0 double precision := coalesce(ground_height(p_x, p_y), 0);
    e double precision := greatest(p_mount, 0.01);
    fov geometry;
    reach geometry;
    shadows geometry;
BEGIN
    fov := camera_fov_ground(p_x, p_y, p_mount, p_heading, p_hfov, p_pitch, p_vfov, p_range);
    IF ST_IsEmpty(fov) THEN
        RETURN ST_Multi(fov);
    END IF;
    -- the sector from the camera out to the far edge of the visible ground: whatever stands in it
    -- may hide part of that ground
    reach := ST_ConvexHull(ST_Collect(fov, c));
    SELECT ST_Union(ST_ConvexHull(ST_Collect(t.geom, ST_Translate(
               ST_Scale(ST_Translate(t.geom, -p_x, -p_y), k.k, k.k), p_x, p_y))))
      INTO shadows
      FROM buildings b
      CROSS JOIN LATERAL (SELECT coalesce(ground_height(ST_X(p), ST_Y(p)), 0) + b.roof_height_m - g0 AS h
                            FROM ST_PointOnSurface(b.geom_4548) p) bh
      CROSS JOIN LATERAL ST_Dump(ST_TriangulatePolygon(b.geom_4548)) t
      CROSS JOIN LATERAL (SELECT CASE
                 WHEN bh.h <= 0 THEN 1.0
                 WHEN bh.h >= e THEN p_range / greatest(ST_Distance(c, t.geom), 0.01) + 1
                 ELSE least(e / (e - bh.h), p_range / greatest(ST_Distance(c, t.geom), 0.01) + 1) END AS k) k
     WHERE ST_Intersects(b.geom_4548, reach)
       AND (bh.h < e OR NOT ST_Intersects(b.geom_4548, c))
       AND ST_GeometryType(t.geom) = 'ST_Polygon';
    IF shadows IS NULL THEN
        RETURN ST_Multi(fov);
    END IF;
    RETURN ST_Multi(ST_CollectionExtract(ST_Difference(fov, shadows), 3));
END $$;

-- the cached viewsheds, recomputed with the new function
SELECT camera_viewsheds_rebuild();
