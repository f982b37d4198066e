-- Main roads (:classes) per community and the length seen by at least one camera (the union of
-- camera_viewsheds; :only_online: cameras online only). Lengths in metres (EPSG:4548).
WITH vs AS (
    SELECT ST_Union(v.geom_4548) AS g
      FROM camera_viewsheds v JOIN cameras c ON c.id = v.camera_id
     WHERE NOT CAST(:only_online AS boolean) OR c.status = 'online'
),
main AS (
    SELECT cm.id, ST_Intersection(r.geom_4548, cm.geom_4548) AS g
      FROM roads r JOIN communities cm ON ST_Intersects(r.geom_4548, cm.geom_4548)
     WHERE r.class = ANY (CAST(:classes AS text[]))
)
SELECT cm.id AS community_id, cm.name,
       coalesce(sum(ST_Length(m.g)), 0) AS main_road_m,
       coalesce(sum(ST_Length(ST_Intersection(m.g, vs.g))), 0) AS covered_m
  FROM communities cm
  LEFT JOIN main m ON m.id = cm.id
 CROSS JOIN vs
 GROUP BY cm.id, cm.name
 ORDER BY cm.id
