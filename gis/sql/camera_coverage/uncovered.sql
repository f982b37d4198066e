-- What the cameras do not see yet: the main roads (:classes, EPSG:4548 WKB) outside the union of
-- the viewsheds, and that union.
WITH vs AS (
    SELECT ST_Union(v.geom_4548) AS g
      FROM camera_viewsheds v JOIN cameras c ON c.id = v.camera_id
     WHERE NOT CAST(:only_online AS boolean) OR c.status = 'online'
),
main AS (SELECT ST_Union(r.geom_4548) AS g FROM roads r WHERE r.class = ANY (CAST(:classes AS text[])))
SELECT ST_AsBinary(CASE WHEN vs.g IS NULL THEN main.g ELSE ST_Difference(main.g, vs.g) END) AS roads_wkb,
       ST_AsBinary(vs.g) AS seen_wkb
  FROM main, vs
