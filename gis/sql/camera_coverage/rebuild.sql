-- Rebuild every camera's viewshed (camera_viewsheds); returns the number of rows.
SELECT camera_viewsheds_rebuild() AS n
