-- Migration 0011_viewshed_roofs, down: camera_viewshed_geom() as migration 0009_civil created it
-- (the camera's own building never occludes; occluders only among buildings meeting the field of
-- view), and the cached viewsheds recomputed with it.
-- The ground a camera placed at (p_x, p_y) sees, buildings occluding (EPSG:4548, Multi)Polygon.
CREATE OR REPLACE FUNCTION camera_viewshed_geom(p_x double precision, p_y double precision, p_mount double precision,
                                     p_heading double precision, p_hfov double precision,
                                     p_pitch double precision, p_vfov double precision,
                                     p_range double precision)
RETURNS geometry LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
    c geometry := ST_SetSRID(ST_MakePoint(p_x, p_y), 4548);
    g0 double precision := coalesce(ground_height(p_x, p_y), 0);
    e double precision := greatest(p_mount, 0.01);
    fov geometry;
    shadows geometry;
BEGIN
    fov := camera_fov_ground(p_x, p_y, p_mount, p_heading, p_hfov, p_pitch, p_vfov, p_range);
    IF ST_IsEmpty(fov) THEN
        RETURN ST_Multi(fov);
    END IF;
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
     WHERE ST_Intersects(b.geom_4548, fov)
       AND NOT ST_Intersects(b.geom_4548, c)
       AND ST_GeometryType(t.geom) = 'ST_Polygon';
    IF shadows IS NULL THEN
        RETURN ST_Multi(fov);
    END IF;
    RETURN ST_Multi(ST_CollectionExtract(ST_Difference(fov, shadows), 3));
END $$;

SELECT camera_viewsheds_rebuild();
