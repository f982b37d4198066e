-- Area (m², EPSG:4548) the cell grids of density/hotspots cover, and the number of grid cells:
-- the grid cells' extent, else the events' estimated extent (planner statistics, no scan).
SELECT COALESCE((SELECT ST_Area(ST_SetSRID(ST_Extent(geom_4548)::geometry, 4548)) FROM grid_cells),
                (SELECT ST_Area(ST_SetSRID(ST_EstimatedExtent('events', 'geom_4548')::geometry, 4548)))
               ) AS area_m2,
       (SELECT count(*) FROM grid_cells) AS n_grid
