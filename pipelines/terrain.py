"""DEM GeoTIFF → Cesium quantized-mesh-1.0 terrain pyramid (``layer.json`` + ``{z}/{x}/{y}.terrain``).

Method (see docs/tiles.md):

- geographic tiling scheme (EPSG:4326, two level-0 tiles, TMS y); levels 0..``max_level``
  (default: the level whose 257-sample tile grid matches the DEM resolution, 15 for 2 m);
- at every level only the tiles intersecting the DEM's lon/lat extent are written, plus both
  level-0 tiles; ``layer.json`` ``available`` lists exactly those, so Cesium upsamples the parent
  for everything else instead of requesting missing files;
- each tile samples the DEM on its own 257 x 257 lon/lat grid (bilinear on a block-mean
  overview no finer than the grid spacing), converts orthometric → ELLIPSOIDAL heights with
  EGM96 (:func:`core.frames.geoid_undulation`), fills cells without DEM data with one constant
  (median DEM height + geoid) so the world outside the district is a flat plain at district level,
  meshes with pydelatin and encodes with :func:`tiles.terrain.encode_tile`;
- extensions ``octvertexnormals`` and ``watermask`` are always present in every tile (static
  files cannot vary by the request's Accept header); the watermask is rasterised from water
  polygons (``--water``) or a single land byte;
- tiles are written gzip-compressed, like Cesium ion's: serve ``.terrain`` with
  ``Content-Encoding: gzip`` and ``Content-Type: application/vnd.quantized-mesh``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pyproj import CRS

from core.errors import InputError
from core.frames import active_geoid
from pipelines.dem import DemSampler, GeoidGrid
from pipelines.progress import Progress
from pipelines.progress import report as say
from pipelines.publish import staged
from tiles.terrain import (
    WATERMASK_SIZE,
    Bounds,
    auto_max_level,
    encode_tile,
    level_max_error,
    mesh_heightmap,
    tile_bounds,
    tile_lonlat_grid,
    tile_range,
)

log = logging.getLogger(__name__)

GRID_SIZE = 257
DEFAULT_MAX_ERROR = 0.25  # metres, at the finest level
TILE_TEMPLATE = "{z}/{x}/{y}.terrain"
LAYER_VERSION = "1.0.0"
EXTENSIONS = ["octvertexnormals", "watermask"]
METRES_PER_DEGREE = 111_320.0
_WGS84 = CRS.from_epsg(4326)


@dataclass
class TerrainBuild:
    """What :func:`build_terrain` wrote."""

    out_dir: Path
    max_level: int
    tiles: int
    bytes: int
    seconds: float
    lonlat_bounds: Bounds
    height_range_ellipsoidal: tuple[float, float]
    fill_height_ellipsoidal: float
    tiles_per_level: list[int] = field(default_factory=list)

    def summary(self) -> str:
        return (f"terrain: {self.tiles} tiles, levels 0..{self.max_level}, {self.bytes / 1e6:.1f} MB, "
                f"{self.seconds:.1f} s -> {self.out_dir}")


# ------------------------------------------------------------------------------ water mask
class _WaterMasks:
    """Rasterises water polygons (any CRS) into 256x256 per-tile masks."""

    def __init__(self, path: Path | None) -> None:
        self.geoms: list[Any] = []
        self.tree = None
        if path is None:
            return
        import pyogrio.raw
        import shapely
        from pyproj import Transformer

        meta, _, wkb, fields = pyogrio.raw.read(path, force_2d=True)
        if not meta.get("crs"):
            raise ValueError(f"{path}: water layer has no CRS")
        names = list(meta["fields"])
        ids = fields[names.index("id")] if "id" in names else np.arange(len(wkb))
        geoms = shapely.from_wkb(wkb)
        bad = [str(ids[i]) for i, g in enumerate(geoms)
               if g is not None and not g.is_empty and g.geom_type not in ("Polygon", "MultiPolygon")]
        if bad:
            raise ValueError(f"{path}: water features {', '.join(bad)} are not polygons")
        to_ll = Transformer.from_crs(CRS.from_user_input(meta["crs"]), _WGS84, always_xy=True)
        keep = [g for g in geoms if g is not None and not g.is_empty]
        self.geoms = [shapely.transform(g, lambda xy: np.column_stack(to_ll.transform(xy[:, 0], xy[:, 1])))
                      for g in keep]
        self.tree = shapely.STRtree(self.geoms) if self.geoms else None

    def mask(self, bounds: Bounds) -> np.ndarray | int:
        if self.tree is None:
            return 0
        import shapely
        from rasterio.features import rasterize
        from rasterio.transform import from_bounds

        box = shapely.box(*bounds)
        hits = self.tree.query(box, predicate="intersects")
        if len(hits) == 0:
            return 0
        shapes = [(self.geoms[i], 255) for i in hits]
        return rasterize(shapes, out_shape=(WATERMASK_SIZE, WATERMASK_SIZE),
                         transform=from_bounds(*bounds, WATERMASK_SIZE, WATERMASK_SIZE),
                         fill=0, dtype="uint8")


# ------------------------------------------------------------------------------- pyramid
def tiles_for_extent(bounds: Bounds, max_level: int) -> list[tuple[int, int, int, int, int]]:
    """Per level, the inclusive (z, x0, y0, x1, y1) range of tiles to write: both level-0
    tiles, and at finer levels the tiles intersecting ``bounds``."""
    ranges = [(0, 0, 0, 1, 0)]
    for z in range(1, max_level + 1):
        ranges.append((z, *tile_range(bounds, z)))
    return ranges


def layer_json(ranges: list[tuple[int, int, int, int, int]], bounds: Bounds, *, name: str,
               extra: dict[str, Any]) -> dict[str, Any]:
    """The ``layer.json`` Cesium's CesiumTerrainProvider reads."""
    return {
        "tilejson": "2.1.0",
        "name": name,
        "description": "Ellipsoidal (WGS84) heights = orthometric DEM + geoid (onemap.heights). Tiles are "
                       "gzip-compressed: "
                       "serve them with Content-Encoding: gzip.",
        "version": LAYER_VERSION,
        "format": "quantized-mesh-1.0",
        "attribution": "",
        "scheme": "tms",
        "tiles": [TILE_TEMPLATE],
        "projection": "EPSG:4326",
        "bounds": [round(v, 9) for v in bounds],
        "minzoom": 0,
        "maxzoom": ranges[-1][0],
        "available": [[{"startX": x0, "startY": y0, "endX": x1, "endY": y1}] for _, x0, y0, x1, y1 in ranges],
        "extensions": list(EXTENSIONS),
        "onemap": extra,
    }


def _native_xy(dem: DemSampler, bounds: Bounds, lon: np.ndarray, lat: np.ndarray,
               step: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """DEM-CRS coordinates of the full tile grid. Small tiles transform every ``step``-th grid
    node with PROJ and interpolate bilinearly between (sub-millimetre over a few hundred metres);
    large tiles transform point by point."""
    n = lon.shape[0]
    if bounds[2] - bounds[0] > 0.1 or (n - 1) % step:
        x, y = dem.to_native(lon.ravel(), lat.ravel(), _WGS84)
        return np.asarray(x).reshape(lon.shape), np.asarray(y).reshape(lon.shape)
    cx, cy = dem.to_native(lon[::step, ::step].ravel(), lat[::step, ::step].ravel(), _WGS84)
    m = (n - 1) // step + 1
    cx, cy = np.asarray(cx).reshape(m, m), np.asarray(cy).reshape(m, m)
    weights = _linear_weights(n, step)  # (n, m): bilinear = W @ coarse @ W.T
    return weights @ cx @ weights.T, weights @ cy @ weights.T


def _linear_weights(n: int, step: int) -> np.ndarray:
    m = (n - 1) // step + 1
    frac = np.arange(n) / step
    i0 = np.minimum(np.floor(frac).astype(np.int64), m - 2)
    t = frac - i0
    w = np.zeros((n, m))
    w[np.arange(n), i0] = 1 - t
    w[np.arange(n), i0 + 1] += t
    return w


def tile_heights(dem: DemSampler, geoid: GeoidGrid, bounds: Bounds, fill: float,
                 dem_ll: Bounds, n: int = GRID_SIZE) -> np.ndarray:
    """(n, n) ellipsoidal heights of the tile grid (row 0 = north); ``fill`` where no DEM."""
    lon, lat = tile_lonlat_grid(bounds, n)
    heights = np.full(lon.shape, fill, dtype=np.float64)
    w, s, e, nth = dem_ll
    inside = (lon >= w) & (lon <= e) & (lat >= s) & (lat <= nth)
    if not inside.any():
        return heights
    spacing_deg = (bounds[3] - bounds[1]) / (n - 1)
    spacing = spacing_deg if dem.crs.is_geographic else spacing_deg * METRES_PER_DEGREE
    if inside.mean() > 0.25:
        x, y = _native_xy(dem, bounds, lon, lat)
        x, y = x[inside], y[inside]
    else:
        x, y = dem.to_native(lon[inside], lat[inside], _WGS84)
    ortho = dem.sample(x, y, None, spacing=spacing)
    ok = np.isfinite(ortho)
    lo, la = lon[inside][ok], lat[inside][ok]
    vals = heights[inside]
    vals[ok] = ortho[ok] + geoid(lo, la)
    heights[inside] = vals
    return heights


@dataclass
class TerrainOptions:
    """Options of :func:`build_terrain` (``onemap tiles terrain``)."""

    water: Path | None = None  # water polygons for the watermask
    max_level: int | None = None  # finest level (default: matches the DEM resolution)
    max_error: float = DEFAULT_MAX_ERROR  # meshing tolerance at the finest level, metres
    compress: bool = True  # gzip the .terrain files


def build_terrain(src: str | Path, out: str | Path, options: TerrainOptions | None = None,
                  progress: Progress | None = None) -> TerrainBuild:
    """Build the quantized-mesh pyramid of the DEM ``src`` (orthometric heights, any CRS) in
    ``OUT.tmp-<pid>`` and publish it atomically as ``out`` once validated; returns what was written."""
    o = options or TerrainOptions()
    with staged(out) as staging:
        build = _build_terrain(Path(src), staging.tmp, o, progress)
    build.out_dir = Path(out)
    log.info(build.summary())
    return build


def _build_terrain(dem_path: Path, out: Path, o: TerrainOptions, progress: Progress | None) -> TerrainBuild:
    t0 = time.perf_counter()
    water, max_level, max_error, compress = o.water, o.max_level, o.max_error, o.compress
    dem = DemSampler(dem_path)
    res_m = dem.resolution * (METRES_PER_DEGREE if dem.crs.is_geographic else 1.0)
    level = auto_max_level(res_m, GRID_SIZE) if max_level is None else int(max_level)
    if not 0 <= level <= 22:
        raise InputError(f"max level {level} outside 0..22")
    if max_error <= 0:
        raise InputError("max_error must be > 0 metres")
    dem_ll = dem.lonlat_bounds()
    geoid = GeoidGrid.over(dem_ll)
    centre = ((dem_ll[0] + dem_ll[2]) / 2, (dem_ll[1] + dem_ll[3]) / 2)
    fill = dem.median_height() + float(geoid(np.array([centre[0]]), np.array([centre[1]]))[0])
    waters = _WaterMasks(Path(water) if water else None)
    ranges = tiles_for_extent(dem_ll, level)
    log.info("terrain: %s, resolution %.2f m, levels 0..%d, %d tiles", dem_path, res_m, level,
             sum((x1 - x0 + 1) * (y1 - y0 + 1) for _, x0, y0, x1, y1 in ranges))

    out.mkdir(parents=True, exist_ok=True)
    n_tiles = sum((x1 - x0 + 1) * (y1 - y0 + 1) for _, x0, y0, x1, y1 in ranges)
    total_bytes = 0
    hmin, hmax = math.inf, -math.inf
    per_level: list[int] = []
    for z, x0, y0, x1, y1 in ranges:
        err = level_max_error(z, level, max_error)
        count = 0
        for x in range(x0, x1 + 1):
            (out / str(z) / str(x)).mkdir(parents=True, exist_ok=True)
            for y in range(y0, y1 + 1):
                b = tile_bounds(z, x, y)
                heights = tile_heights(dem, geoid, b, fill, dem_ll)
                positions, triangles = mesh_heightmap(heights, b, err)
                data = encode_tile(positions, triangles, b, waters.mask(b), compress=compress)
                (out / str(z) / str(x) / f"{y}.terrain").write_bytes(data)
                total_bytes += len(data)
                hmin, hmax = min(hmin, float(heights.min())), max(hmax, float(heights.max()))
                count += 1
                say(progress, "terrain", sum(per_level) + count, n_tiles)
        per_level.append(count)
    extra = {
        "heights": active_geoid().metadata(),  # the run's --geoid (EGM96 by default)
        "content_encoding": "gzip" if compress else "identity",
        "height_range_ellipsoidal": [round(hmin, 3), round(hmax, 3)],
        "fill_height_ellipsoidal": round(fill, 3),
        "max_error": max_error,
        "dem": Path(dem_path).name,
        "water": Path(water).name if water else None,
    }
    layer = layer_json(ranges, dem_ll, name=Path(dem_path).stem, extra=extra)
    (out / "layer.json").write_text(json.dumps(layer, indent=1), encoding="utf-8")
    return TerrainBuild(out, level, sum(per_level), total_bytes, time.perf_counter() - t0, dem_ll,
                        (hmin, hmax), fill, per_level)
