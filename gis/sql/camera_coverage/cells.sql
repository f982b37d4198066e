-- Hot-spot cells (GeoJSON geometries in CRS84 / EPSG:4490, :cells a JSON array of
-- {id, gi_z, geometry}) and the share of each cell's area the cameras see.
WITH c AS (
    SELECT x.id, x.gi_z, ST_Transform(ST_SetSRID(ST_GeomFromGeoJSON(x.geometry::text), 4490), 4548) AS g
      FROM json_to_recordset(CAST(:cells AS json)) AS x(id text, gi_z double precision, geometry json)
),
vs AS (
    SELECT ST_Union(v.geom_4548) AS g
      FROM camera_viewsheds v JOIN cameras k ON k.id = v.camera_id
     WHERE NOT CAST(:only_online AS boolean) OR k.status = 'online'
)
SELECT c.id, c.gi_z, ST_Area(c.g) AS area_m2,
       coalesce(ST_Area(ST_Intersection(c.g, vs.g)), 0) / nullif(ST_Area(c.g), 0) AS seen_share,
       ST_AsBinary(c.g) AS wkb
  FROM c CROSS JOIN vs
 ORDER BY c.gi_z DESC, c.id
