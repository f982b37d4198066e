-- Migration 0009_civil: camera viewsheds, the ground each camera sees (docs/postgis.md "Camera
-- coverage"). The same camera model as cameras_visible.sql: eye = ground + mount_height, the
-- bearing within heading +- hfov/2, the elevation angle within pitch +- vfov/2 (vfov NULL: from
-- hfov at 16:9; hfov >= 180: no vertical limit), slant distance <= range_m; buildings are prisms
-- (their ground + roof_height_m), the camera's own building ignored. Ground is taken level at
-- the camera's ground height inside the view (building heights are relative to it; terrain
-- relief between camera and ground point is not an occluder here, unlike cameras_visible).
--
-- A prism over a convex piece F of a footprint, of relative height h below the eye height e,
-- hides exactly the ground points c + t (p - c), p in F, 1 <= t < e / (e - h): the union of F
-- scaled from the camera c by every t in [1, k) — convex, so the convex hull of F and F scaled
-- by k. h >= e hides everything behind F (k large enough to pass the range). Footprints are
-- split into triangles (ST_TriangulatePolygon), so the shadows are exact for any footprint.

-- The sector of ground within the camera's field of view (no occlusion): EPSG:4548 polygon.
CREATE FUNCTION camera_fov_ground(p_x double precision, p_y double precision, p_eye double precision,
                                  p_heading double precision, p_hfov double precision,
                                  p_pitch double precision, p_vfov double precision,
                                  p_range double precision)
RETURNS geometry LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    e double precision := greatest(p_eye, 0.01);
    pitch double precision := coalesce(p_pitch, 0);
    vfov double precision := coalesce(p_vfov, CASE WHEN p_hfov >= 180 THEN 180
                                                   ELSE degrees(2 * atan(tan(radians(p_hfov / 2)) * 9.0 / 16.0)) END);
    d_far double precision;
    d_near double precision := 0;
    a_lo double precision;
    a_hi double precision;
    n integer;
    pts geometry[];
    sector geometry;
BEGIN
    IF p_range <= e THEN
        RETURN ST_GeomFromText('POLYGON EMPTY', 4548);
    END IF;
    d_far := sqrt(p_range * p_range - e * e);
    IF vfov < 180 THEN
        a_lo := pitch - vfov / 2;
        a_hi := pitch + vfov / 2;
        IF a_lo >= 0 THEN
            RETURN ST_GeomFromText('POLYGON EMPTY', 4548);  -- looks above the horizon
        END IF;
        IF a_lo > -90 THEN
            d_near := e / tan(radians(-a_lo));
        END IF;
        IF a_hi < 0 THEN
            d_far := least(d_far, e / tan(radians(-a_hi)));
        END IF;
    END IF;
    IF d_near >= d_far THEN
        RETURN ST_GeomFromText('POLYGON EMPTY', 4548);
    END IF;
    IF p_hfov >= 360 THEN
        sector := ST_Buffer(ST_SetSRID(ST_MakePoint(p_x, p_y), 4548), d_far, 'quad_segs=45');
    ELSE
        n := greatest(ceil(p_hfov / 2)::integer, 2);  -- arc vertices at most 2 degrees apart
        SELECT array_agg(ST_MakePoint(p_x + d_far * sin(radians(b)), p_y + d_far * cos(radians(b))) ORDER BY k)
          INTO pts
          FROM (SELECT k, p_heading - p_hfov / 2 + p_hfov * k / n AS b FROM generate_series(0, n) k) a;
        sector := ST_SetSRID(ST_MakePolygon(ST_MakeLine(
                      ARRAY[ST_MakePoint(p_x, p_y)] || pts || ARRAY[ST_MakePoint(p_x, p_y)])), 4548);
    END IF;
    IF d_near > 0 THEN
        sector := ST_Difference(sector, ST_Buffer(ST_SetSRID(ST_MakePoint(p_x, p_y), 4548), d_near, 'quad_segs=45'));
    END IF;
    RETURN sector;
END $$;

-- The ground a camera placed at (p_x, p_y) sees, buildings occluding (EPSG:4548, Multi)Polygon.
CREATE FUNCTION camera_viewshed_geom(p_x double precision, p_y double precision, p_mount double precision,
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

-- The cache: one row per camera (rebuilt when a camera moves or turns, and by `onemap load`
-- through camera_viewsheds_rebuild()).
CREATE TABLE camera_viewsheds (
    camera_id  text PRIMARY KEY REFERENCES cameras (id) ON DELETE CASCADE,
    geom_4548  geometry(MultiPolygon, 4548) NOT NULL,
    area_m2    double precision NOT NULL,
    built_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX camera_viewsheds_geom_4548_gix ON camera_viewsheds USING gist (geom_4548);

-- Rebuild the viewsheds of p_ids (NULL: every camera); returns the number of rows written.
CREATE FUNCTION camera_viewsheds_rebuild(p_ids text[] DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    n integer;
BEGIN
    DELETE FROM camera_viewsheds WHERE p_ids IS NULL OR camera_id = ANY (p_ids);
    INSERT INTO camera_viewsheds (camera_id, geom_4548, area_m2)
    SELECT c.id, v.g, ST_Area(v.g)
      FROM cameras c
      CROSS JOIN LATERAL (SELECT camera_viewshed_geom(ST_X(c.geom_4548), ST_Y(c.geom_4548), c.mount_height,
                                                      c.heading, c.hfov, c.pitch, c.vfov, c.range_m) AS g) v
     WHERE p_ids IS NULL OR c.id = ANY (p_ids);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

CREATE FUNCTION cameras_viewshed_trigger() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    PERFORM camera_viewsheds_rebuild(ARRAY[NEW.id]);
    RETURN NULL;
END $$;
CREATE TRIGGER cameras_viewshed_aiu AFTER INSERT OR UPDATE OF geom, mount_height, heading, pitch, hfov, vfov, range_m
    ON cameras FOR EACH ROW EXECUTE FUNCTION cameras_viewshed_trigger();
