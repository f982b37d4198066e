-- Cameras that can see a target point at :h m above ground (see docs/postgis.md "Line of sight"):
-- 1. slant distance sqrt(d^2 + (mount_height - h)^2) <= range_m;
-- 2. the bearing camera -> target (clockwise from grid north, EPSG:4548) is within heading +- hfov/2;
-- 3. no building prism blocks the sight line: where the 2D segment crosses a footprint, the
--    line's height (linear from mount_height to h) is below the roof (roof_height_m) at some
--    point of the crossing. The height is linear along the segment, so checking the vertices of
--    ST_Intersection(footprint, segment) is exact. Ground is taken as level (heights above local
--    ground); the camera's own building and the building containing the target are ignored.
WITH t AS (
    SELECT ST_Transform(ST_SetSRID(ST_MakePoint(:lon, :lat), 4490), 4548) AS g, CAST(:h AS double precision) AS h
),
cand AS (
    SELECT c.id, c.name, c.kind, c.status, c.stream_url, c.mount_height, c.heading, c.hfov, c.range_m,
           c.geom_4548 AS cg, t.g AS tg, t.h AS th,
           ST_Distance(c.geom_4548, t.g) AS d,
           degrees(ST_Azimuth(c.geom_4548, t.g)) AS bearing
      FROM cameras c, t
     WHERE ST_DWithin(c.geom_4548, t.g, (SELECT COALESCE(max(range_m), 0) FROM cameras))
       AND (NOT CAST(:only_online AS boolean) OR c.status = 'online')
),
infov AS (
    SELECT cand.*, ST_MakeLine(cg, tg) AS seg
      FROM cand
     WHERE sqrt(d * d + (mount_height - th) ^ 2) <= range_m
       AND (hfov >= 360 OR d < 0.01
            OR abs(mod((bearing - heading + 540)::numeric, 360) - 180) <= hfov / 2)
)
SELECT v.id AS camera_id, v.name, v.kind, v.status, v.stream_url, v.d AS distance_m,
       sqrt(v.d * v.d + (v.mount_height - v.th) ^ 2) AS slant_m, v.bearing AS bearing_deg
  FROM infov v
 WHERE v.d < 0.01 OR NOT EXISTS (
        SELECT 1
          FROM buildings b
         WHERE ST_Intersects(b.geom_4548, v.seg)
           AND NOT ST_Intersects(b.geom_4548, v.cg)
           AND NOT ST_Intersects(b.geom_4548, v.tg)
           AND EXISTS (
                SELECT 1
                  FROM ST_DumpPoints(ST_Intersection(b.geom_4548, v.seg)) p
                 WHERE v.mount_height + (v.th - v.mount_height) * ST_LineLocatePoint(v.seg, p.geom)
                       < b.roof_height_m))
 ORDER BY v.d, v.id
