"""The DEM into PostGIS: a coarse regular grid of ground heights (tables ``dem_meta``/``dem_rows``).

The embedded cluster has no ``postgis_raster`` requirement: the delivery's GeoTIFF is resampled
here (bilinear, :class:`pipelines.dem.DemSampler`) onto an EPSG:4548 grid every ``step_m`` metres
and stored one row per grid row, orthometric (as delivered, 1985 national height datum) and
ellipsoidal (+ EGM96 undulation N from :mod:`core.frames`). SQL reads it with
``ground_height(x, y, ellipsoidal)`` (bilinear between grid points): camera line of sight,
heights of CZML tracks and of live messages. Replacing it is a plain DELETE + INSERT in the
load's transaction: readers keep the previous grid until the commit.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import psycopg
from pyproj import Transformer

from core.delivery.errors import NothingAcceptedError
from gis.loaders.io import Mapping
from gis.loaders.report import LayerReport

DEFAULT_STEP_M = 10.0


def dem_grid(path: Path, step_m: float = DEFAULT_STEP_M) -> dict[str, object]:
    """The DEM at ``path`` on a regular EPSG:4548 grid: x0, y0 (south-west grid point), dx, dy,
    nx, ny, h_ortho and h_ellip as (ny, nx) arrays (row 0 = south; NaN where no data)."""
    from pipelines.dem import DemSampler, GeoidGrid

    sampler = DemSampler(path)
    to_4548 = Transformer.from_crs(sampler.crs, "EPSG:4548", always_xy=True)
    minx, miny, maxx, maxy = sampler.bounds()
    half = sampler.resolution / 2
    xs, ys = to_4548.transform([minx + half, maxx - half, minx + half, maxx - half],
                               [miny + half, miny + half, maxy - half, maxy - half])
    x0, y0 = float(np.ceil(max(xs[0], xs[2]) / step_m) * step_m), float(np.ceil(max(ys[0], ys[1]) / step_m) * step_m)
    x1, y1 = float(min(xs[1], xs[3])), float(min(ys[2], ys[3]))
    nx, ny = int(np.floor((x1 - x0) / step_m)) + 1, int(np.floor((y1 - y0) / step_m)) + 1
    if nx < 2 or ny < 2:
        raise NothingAcceptedError(f"{path}: the DEM covers less than 2x2 points of a {step_m} m grid")
    gx, gy = np.meshgrid(x0 + np.arange(nx) * step_m, y0 + np.arange(ny) * step_m)
    h_ortho = sampler.sample(gx, gy, crs="EPSG:4548")
    lon, lat = Transformer.from_crs("EPSG:4548", "EPSG:4490", always_xy=True).transform(gx, gy)
    geoid = GeoidGrid.over((float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max())))
    h_ellip = h_ortho + geoid(lon, lat)
    return {"x0": x0, "y0": y0, "dx": step_m, "dy": step_m, "nx": nx, "ny": ny,
            "h_ortho": h_ortho, "h_ellip": h_ellip}


def load_dem(conn: psycopg.Connection, path: Path, mapping: Mapping = Mapping(),
             step_m: float = DEFAULT_STEP_M) -> LayerReport:
    """Replace the DEM grid (one row per grid row; ``source_rows`` = grid points)."""
    t0 = time.perf_counter()
    report = LayerReport(layer="dem", source=str(path))
    g = dem_grid(Path(path), step_m)
    h_ortho, h_ellip = g["h_ortho"], g["h_ellip"]
    assert isinstance(h_ortho, np.ndarray) and isinstance(h_ellip, np.ndarray)
    report.source_rows = h_ortho.size
    conn.execute("DELETE FROM dem_rows")
    conn.execute("DELETE FROM dem_meta")
    conn.execute("INSERT INTO dem_meta (x0, y0, dx, dy, nx, ny, source, geoid) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                 (g["x0"], g["y0"], g["dx"], g["dy"], g["nx"], g["ny"], str(path), "egm96"))
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO dem_rows (j, h_ortho, h_ellip) VALUES (%s, %s, %s)",
                        [(j, [float(v) for v in h_ortho[j]], [float(v) for v in h_ellip[j]])
                         for j in range(h_ortho.shape[0])])
    report.finish(h_ortho.size)
    missing = int(np.isnan(h_ortho).sum())
    report.note(f"{g['nx']} x {g['ny']} grid every {step_m} m from ({g['x0']}, {g['y0']}) EPSG:4548"
                + (f"; {missing} points without data" if missing else ""))
    report.seconds = time.perf_counter() - t0
    return report
