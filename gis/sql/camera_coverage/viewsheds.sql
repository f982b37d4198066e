-- The cached viewsheds as GeoJSON (CRS84) for the viewer layer.
SELECT v.camera_id, c.name, c.kind, c.status, round(v.area_m2::numeric, 1) AS area_m2,
       ST_AsGeoJSON(ST_Transform(v.geom_4548, 4490), 7)::json AS geometry
  FROM camera_viewsheds v JOIN cameras c ON c.id = v.camera_id
 WHERE NOT CAST(:only_online AS boolean) OR c.status = 'online'
 ORDER BY v.camera_id
