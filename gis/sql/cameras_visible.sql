-- Cameras that can see a target point :h m above the ground, in 3D (docs/postgis.md "Cameras:
-- line of sight"). Heights are orthometric: ground from the DEM grid (ground_height(); level
-- ground at 0 when no DEM is loaded), camera eye = ground + mount_height, target = ground + h.
-- 1. slant distance eye -> target <= range_m;
-- 2. horizontal: the bearing (clockwise from grid north, EPSG:4548) within heading +- hfov/2;
-- 3. vertical: the elevation angle eye -> target within pitch +- vfov/2 (vfov NULL: from hfov at
--    16:9; hfov >= 180 or vfov = 180: no vertical limit);
-- 4. no building blocks the sight line: buildings are prisms from their ground (DEM at a point on
--    the footprint) to ground + roof_height_m; the line's height is linear along the segment, so
--    testing the vertices of ST_Intersection(footprint, segment) is exact. The camera's own
--    building and the target's are ignored;
-- 5. the terrain does not block it: the DEM sampled every half grid step along the segment stays
--    below the line.
WITH t AS (
    SELECT p.g, ST_X(p.g) AS tx, ST_Y(p.g) AS ty,
           coalesce(ground_height(ST_X(p.g), ST_Y(p.g)), 0) + CAST(:h AS double precision) AS tz
      FROM (SELECT ST_Transform(ST_SetSRID(ST_MakePoint(:lon, :lat), 4490), 4548) AS g) p
),
cand AS (
    SELECT c.id, c.name, c.kind, c.status, c.stream_url, c.heading, c.hfov, c.range_m,
           coalesce(c.pitch, 0) AS pitch,
           coalesce(c.vfov, CASE WHEN c.hfov >= 180 THEN 180
                                 ELSE degrees(2 * atan(tan(radians(c.hfov / 2)) * 9.0 / 16.0)) END) AS vfov,
           c.geom_4548 AS cg, ST_X(c.geom_4548) AS cx, ST_Y(c.geom_4548) AS cy,
           coalesce(ground_height(ST_X(c.geom_4548), ST_Y(c.geom_4548)), 0) + c.mount_height AS cz,
           t.g AS tg, t.tx, t.ty, t.tz,
           ST_Distance(c.geom_4548, t.g) AS d,
           degrees(ST_Azimuth(c.geom_4548, t.g)) AS bearing
      FROM cameras c, t
     WHERE ST_DWithin(c.geom_4548, t.g, (SELECT COALESCE(max(range_m), 0) FROM cameras))
       AND (NOT CAST(:only_online AS boolean) OR c.status = 'online')
),
geo AS (
    SELECT cand.*, sqrt(d * d + (tz - cz) ^ 2) AS slant, degrees(atan2(tz - cz, d)) AS elevation
      FROM cand
),
infov AS (
    SELECT geo.*, ST_MakeLine(cg, tg) AS seg
      FROM geo
     WHERE slant <= range_m
       AND (hfov >= 360 OR d < 0.01
            OR abs(mod((bearing - heading + 540)::numeric, 360) - 180) <= hfov / 2)
       AND (vfov >= 180 OR abs(elevation - pitch) <= vfov / 2)
),
dem AS (SELECT least(dx, dy) / 2 AS step FROM dem_meta)
SELECT v.id AS camera_id, v.name, v.kind, v.status, v.stream_url, v.d AS distance_m,
       v.slant AS slant_m, v.bearing AS bearing_deg
  FROM infov v
 WHERE (v.d < 0.01 OR NOT EXISTS (
        SELECT 1
          FROM buildings b
         CROSS JOIN LATERAL (SELECT coalesce(ground_height(ST_X(p), ST_Y(p)), 0) + b.roof_height_m AS top
                               FROM ST_PointOnSurface(b.geom_4548) p) bt
         WHERE ST_Intersects(b.geom_4548, v.seg)
           AND NOT ST_Intersects(b.geom_4548, v.cg)
           AND NOT ST_Intersects(b.geom_4548, v.tg)
           AND EXISTS (
                SELECT 1
                  FROM ST_DumpPoints(ST_Intersection(b.geom_4548, v.seg)) p
                 WHERE v.cz + (v.tz - v.cz) * ST_LineLocatePoint(v.seg, p.geom) < bt.top)))
   AND NOT EXISTS (
        SELECT 1
          FROM dem
         CROSS JOIN LATERAL (SELECT greatest(ceil(v.d / dem.step)::integer, 1) AS n) s
         CROSS JOIN LATERAL generate_series(1, s.n - 1) k
         WHERE ground_height(v.cx + (v.tx - v.cx) * k / s.n, v.cy + (v.ty - v.cy) * k / s.n)
               > v.cz + (v.tz - v.cz) * k / s.n)
 ORDER BY v.d, v.id
