"""Shared constants and helpers of the sample-district generator.

Everything here is deterministic: random numbers come from per-module generators derived from the
seed and the module name, so one module's draws never shift another's.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import shapely
from pyproj import Transformer

CRS_4548 = "EPSG:4548"  # CGCS2000 / 3-degree Gauss-Kruger CM 117E (metres)
CRS_4490 = "EPSG:4490"  # CGCS2000 geographic (degrees)
CENTRE_LONLAT = (117.39, 32.93)
DISTRICT_AREA_M2 = 4.61e6
DEM_RES_M = 2.0
DEM_MARGIN_M = 200.0
# Gap between district copies with --scale: twice the DEM margin so copies' DEMs abut exactly.
COPY_GAP_M = 2 * DEM_MARGIN_M
LAKE_LEVEL_M = 17.6  # orthometric water level of Longzi Lake (1985 datum)
RIVER_LEVEL_M = 17.9
# Events cover one year (local time, +08:00); GPS covers its last 30 days.
EVENTS_START = np.datetime64("2025-11-01T00:00:00")
EVENTS_END = np.datetime64("2026-11-01T00:00:00")
GPS_DAYS = 30
FIXED_DATE = "2026-01-01"  # written wherever a file format wants a creation date


def rng_for(seed: int, name: str) -> np.random.Generator:
    """An independent generator for one module (stable across code changes elsewhere)."""
    return np.random.default_rng([int(seed), zlib.crc32(name.encode("utf-8"))])


@lru_cache(maxsize=1)
def centre_xy_4548() -> tuple[float, float]:
    tr = Transformer.from_crs(CRS_4490, CRS_4548, always_xy=True)
    x, y = tr.transform(*CENTRE_LONLAT)
    return round(float(x), 1), round(float(y), 1)


def rotation(angle_rad: float | np.ndarray) -> np.ndarray:
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    return np.array([[c, -s], [s, c]])


def round_geoms(geoms: np.ndarray, ndigits: int = 2) -> np.ndarray:
    """Round coordinates (cm) so files are compact and stable."""
    return shapely.transform(np.asarray(geoms, dtype=object), lambda c: np.round(c, ndigits))


def rect_polygons(cx, cy, length, width, angle) -> np.ndarray:
    """Vectorised oriented rectangles (length along `angle`, radians from +x)."""
    cx, cy, length, width, angle = np.broadcast_arrays(
        *(np.asarray(a, dtype=float) for a in (cx, cy, length, width, angle))
    )
    u = np.array([-0.5, 0.5, 0.5, -0.5, -0.5])
    v = np.array([-0.5, -0.5, 0.5, 0.5, -0.5])
    return template_polygons(np.stack([u, v], axis=1), cx, cy, length, width, angle)


def template_polygons(template_uv, cx, cy, sx, sy, angle) -> np.ndarray:
    """Place a unit template (closed ring of (u, v) in [-0.5, 0.5]) scaled, rotated and moved."""
    t = np.asarray(template_uv, dtype=float)
    cx, cy, sx, sy, angle = (np.asarray(a, dtype=float)[:, None] for a in (cx, cy, sx, sy, angle))
    u = t[None, :, 0] * sx
    v = t[None, :, 1] * sy
    c, s = np.cos(angle), np.sin(angle)
    x = cx + u * c - v * s
    y = cy + u * s + v * c
    return shapely.polygons(np.stack([x, y], axis=2))


def sample_in_polygon(rng: np.random.Generator, poly, n: int, max_rounds: int = 50) -> np.ndarray:
    """n uniform random points inside a polygon (rejection sampling, vectorised)."""
    minx, miny, maxx, maxy = poly.bounds
    out = np.empty((0, 2))
    shapely.prepare(poly)
    for _ in range(max_rounds):
        if len(out) >= n:
            break
        need = n - len(out)
        frac = max(poly.area / max((maxx - minx) * (maxy - miny), 1e-9), 0.05)
        m = int(need / frac * 1.3) + 8
        pts = np.column_stack([rng.uniform(minx, maxx, m), rng.uniform(miny, maxy, m)])
        ok = shapely.contains_xy(poly, pts[:, 0], pts[:, 1])
        out = np.vstack([out, pts[ok]])
    return out[:n]


def iso_local(t: np.ndarray) -> np.ndarray:
    """datetime64 (local +08:00 wall time) -> ISO strings with offset; NaT -> ''."""
    t = np.asarray(t, dtype="datetime64[s]")
    s = np.datetime_as_string(t, unit="s").astype(object)
    nat = np.isnat(t)
    s = np.where(nat, "", s + "+08:00")
    return s


def suffix_ids(values, copy_index: int):
    """Ids of district copy i>0 get '-kI'; None/'' stay as they are."""
    if copy_index == 0:
        return values
    arr = np.asarray(values, dtype=object)
    suf = f"-k{copy_index}"
    return np.array(
        [v if v is None or v == "" or (isinstance(v, float) and np.isnan(v)) else f"{v}{suf}" for v in arr],
        dtype=object,
    )


@dataclass
class District:
    """Everything the modules share (one district copy, EPSG:4548)."""

    seed: int
    boundary: object = None  # shapely Polygon
    lake: object = None  # full lake polygon (extends beyond the boundary)
    lake_params: dict = field(default_factory=dict)
    river: object = None  # river polygon (outside the lake)
    river_line: object = None
    river_width: float = 24.0
    land: object = None  # boundary minus water
    communities: object = None  # GeoDataFrame
    grid_cells: object = None
    roads: object = None
    graph: object = None
    plots: object = None
    buildings: object = None
    green: object = None
    water: object = None
    trees: object = None
    furniture: object = None
    cameras: object = None
    workers: object = None
    checkpoints: object = None
    geofences: object = None
    population: object = None
    events: object = None
    dem: object = None  # (array, transform)
    extras: dict = field(default_factory=dict)
