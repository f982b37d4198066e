-- Migration 0004_live_ops: a coarse DEM inside PostGIS (no postgis_raster needed).
-- `onemap load dem` (gis/loaders/dem.py) resamples the delivery's dem.tif onto a regular
-- EPSG:4548 grid (default 10 m) and stores one row per grid row: orthometric heights (1985
-- national datum, as delivered) and ellipsoidal ones (+ EGM96 undulation N, core/frames).
-- Cell (i, j) is the height AT x0 + i*dx, y0 + j*dy (grid points, not cell centres).
CREATE TABLE dem_meta (
    id         boolean PRIMARY KEY DEFAULT true CHECK (id),
    x0         double precision NOT NULL,  -- EPSG:4548 easting of column 0
    y0         double precision NOT NULL,  -- EPSG:4548 northing of row 0 (the southernmost)
    dx         double precision NOT NULL CHECK (dx > 0),
    dy         double precision NOT NULL CHECK (dy > 0),
    nx         integer NOT NULL CHECK (nx >= 2),
    ny         integer NOT NULL CHECK (ny >= 2),
    source     text,
    geoid      text,
    loaded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE dem_rows (
    j        integer PRIMARY KEY CHECK (j >= 0),
    h_ortho  real[] NOT NULL,  -- NaN where the DEM has no data
    h_ellip  real[] NOT NULL
);

-- Ground height at (x, y) EPSG:4548, bilinear between the four grid points; NULL outside the
-- grid, where a corner has no data, or when no DEM is loaded. p_ellipsoidal: WGS84 ellipsoidal
-- height instead of orthometric.
CREATE FUNCTION ground_height(p_x double precision, p_y double precision,
                              p_ellipsoidal boolean DEFAULT false)
RETURNS double precision LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
    m dem_meta;
    fi double precision; fj double precision;
    gi integer; gj integer;
    u double precision; v double precision;
    r0 real[]; r1 real[];
    h00 double precision; h10 double precision; h01 double precision; h11 double precision;
BEGIN
    SELECT * INTO m FROM dem_meta;
    IF NOT FOUND OR p_x IS NULL OR p_y IS NULL THEN
        RETURN NULL;
    END IF;
    fi := (p_x - m.x0) / m.dx;
    fj := (p_y - m.y0) / m.dy;
    IF fi < 0 OR fj < 0 OR fi > m.nx - 1 OR fj > m.ny - 1 THEN
        RETURN NULL;
    END IF;
    gi := least(floor(fi)::integer, m.nx - 2);
    gj := least(floor(fj)::integer, m.ny - 2);
    u := fi - gi;
    v := fj - gj;
    IF p_ellipsoidal THEN
        SELECT h_ellip INTO r0 FROM dem_rows WHERE dem_rows.j = gj;
        SELECT h_ellip INTO r1 FROM dem_rows WHERE dem_rows.j = gj + 1;
    ELSE
        SELECT h_ortho INTO r0 FROM dem_rows WHERE dem_rows.j = gj;
        SELECT h_ortho INTO r1 FROM dem_rows WHERE dem_rows.j = gj + 1;
    END IF;
    h00 := r0[gi + 1]; h10 := r0[gi + 2]; h01 := r1[gi + 1]; h11 := r1[gi + 2];
    IF h00 IS NULL OR h10 IS NULL OR h01 IS NULL OR h11 IS NULL
       OR h00 = 'NaN' OR h10 = 'NaN' OR h01 = 'NaN' OR h11 = 'NaN' THEN
        RETURN NULL;
    END IF;
    RETURN (h00 * (1 - u) + h10 * u) * (1 - v) + (h01 * (1 - u) + h11 * u) * v;
END $$;

CREATE FUNCTION ground_height_lonlat(p_lon double precision, p_lat double precision,
                                     p_ellipsoidal boolean DEFAULT false)
RETURNS double precision LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN EXISTS (SELECT 1 FROM dem_meta) AND p_lon IS NOT NULL AND p_lat IS NOT NULL THEN
           ground_height(ST_X(g), ST_Y(g), p_ellipsoidal) END
      FROM (SELECT ST_Transform(ST_SetSRID(ST_MakePoint(p_lon, p_lat), 4490), 4548) AS g) p
$$;
