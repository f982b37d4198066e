"""DEM height lookups: vectorised bilinear sampling of a single-band GeoTIFF, nodata aware.

Heights come back in the DEM's own vertical datum (the sample delivery's ``dem.tif`` is
ORTHOMETRIC); add :func:`core.frames.geoid_undulation` for ellipsoidal heights.

    >>> from pipelines.dem import sample_dem
    >>> h_ortho = sample_dem("clean/dem.tif", x_4548, y_4548, 4548)

Bilinear interpolation between pixel centres; a neighbour that is nodata (or outside the
raster) drops out and the remaining weights are renormalised, so points near holes and edges
still get a height; NaN only where all four neighbours are missing.

:class:`DemSampler` keeps the raster in memory and builds block-mean overviews (powers of two)
for sampling coarse grids without aliasing (terrain pyramid levels).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from pyproj import CRS, Transformer

from core.errors import InputError
from core.frames import geoid_undulation

log = logging.getLogger(__name__)


class DemError(InputError, ValueError):
    """The DEM file cannot be used (missing CRS, rotated, unreadable)."""


@dataclass(frozen=True)
class _Grid:
    heights: np.ndarray  # float64, NaN = nodata; row 0 = north
    transform: Affine
    padded: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "padded", pad_nan(self.heights))

    @property
    def resolution(self) -> float:
        return max(abs(self.transform.a), abs(self.transform.e))


def pad_nan(heights: np.ndarray, width: int = 2) -> np.ndarray:
    """``heights`` with a NaN border of ``width`` cells (what :func:`bilinear_padded` expects)."""
    out = np.full((heights.shape[0] + 2 * width, heights.shape[1] + 2 * width), np.nan)
    out[width:-width, width:-width] = heights
    return out


def bilinear_padded(padded: np.ndarray, col: np.ndarray, row: np.ndarray) -> np.ndarray:
    """:func:`bilinear` on an array from :func:`pad_nan` (width 2); col/row index the unpadded
    array. NaN neighbours drop out and the remaining weights are renormalised."""
    col = np.asarray(col, dtype=np.float64)
    row = np.asarray(row, dtype=np.float64)
    nrow, ncol = padded.shape[0] - 4, padded.shape[1] - 4
    bad = ~(np.isfinite(col) & np.isfinite(row))
    col = np.clip(np.where(bad, -2.0, col), -2.0, ncol + 0.0)
    row = np.clip(np.where(bad, -2.0, row), -2.0, nrow + 0.0)
    c0 = np.floor(col)
    r0 = np.floor(row)
    fc = col - c0
    fr = row - r0
    ci = c0.astype(np.int64) + 2
    ri = r0.astype(np.int64) + 2
    acc = np.zeros(col.shape)
    wsum = np.zeros(col.shape)
    corners = ((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc), (1, 0, fr * (1 - fc)), (1, 1, fr * fc))
    for dr, dc, w in corners:
        val = padded[ri + dr, ci + dc]
        ok = np.isfinite(val) & (w > 0)
        acc += np.where(ok, w * np.where(ok, val, 0.0), 0.0)
        wsum += np.where(ok, w, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = acc / wsum
    out[(wsum <= 0) | bad] = np.nan
    return out


def bilinear(heights: np.ndarray, col: np.ndarray, row: np.ndarray) -> np.ndarray:
    """Bilinear sample at fractional pixel-centre coordinates (col, row) of ``heights``.

    Neighbours that are NaN or outside the array drop out and the remaining weights are
    renormalised; NaN only when all four are missing."""
    return bilinear_padded(pad_nan(np.asarray(heights, dtype=np.float64)), col, row)


def _block_mean(heights: np.ndarray) -> np.ndarray:
    """2x2 block mean ignoring NaN (a block of four NaN stays NaN)."""
    nrow, ncol = heights.shape
    padded = np.full((nrow + nrow % 2, ncol + ncol % 2), np.nan)
    padded[:nrow, :ncol] = heights
    blocks = padded.reshape(padded.shape[0] // 2, 2, padded.shape[1] // 2, 2)
    valid = np.isfinite(blocks)
    total = np.where(valid, blocks, 0.0).sum(axis=(1, 3))
    count = valid.sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


class DemSampler:
    """An in-memory DEM (band 1) with overviews; sample it in any CRS."""

    def __init__(self, path: str | Path, band: int = 1,
                 window: tuple[tuple[float, float, float, float], CRS | str] | None = None,
                 resolution: float | None = None) -> None:
        """``window``: (bounds, their CRS): hold only the DEM under them (plus a few cells), as a
        spatial partition does; the same heights there as the whole DEM, NaN beyond.
        ``resolution`` (DEM units, with a window): block means of that size at most (tiles far above
        the leaves, whose grid is coarser)."""
        self.path = Path(path)
        self._median: float | None = None
        self._band = band
        self._windowed = window is not None
        try:
            with rasterio.open(self.path) as ds:
                if ds.crs is None:
                    raise DemError(f"{self.path}: the DEM has no CRS")
                if ds.transform.b != 0 or ds.transform.d != 0:
                    raise DemError(f"{self.path}: rotated/sheared geotransforms are not supported")
                self.crs = CRS.from_wkt(ds.crs.to_wkt())
                win = None if window is None else self._window(ds, *window)
                step = max(1, int((resolution or 0.0) // max(abs(ds.transform.a), abs(ds.transform.e))))
                if win is not None and step > 1 and min(win.width, win.height) >= 2 * step:
                    shape = (int(win.height // step), int(win.width // step))
                    data = ds.read(band, masked=True, window=win, out_shape=shape,
                                   resampling=rasterio.enums.Resampling.average)
                    transform = ds.window_transform(win) * Affine.scale(win.width / shape[1], win.height / shape[0])
                else:
                    data = ds.read(band, masked=True, window=win)
                    transform = ds.transform if win is None else ds.window_transform(win)
        except rasterio.errors.RasterioIOError as exc:
            raise DemError(f"{self.path}: cannot read the DEM: {exc}") from exc
        heights = np.ma.filled(data.astype(np.float64), np.nan)
        heights[~np.isfinite(heights)] = np.nan
        if window is None and not np.isfinite(heights).any():
            raise DemError(f"{self.path}: the DEM has no valid (non-nodata) cell")
        if heights.size == 0:  # a window off the DEM: one no-data cell
            heights = np.full((1, 1), np.nan)
        self._grids = [_Grid(heights, transform)]
        self._transformers: dict[str, Transformer] = {}

    def _window(self, ds: rasterio.DatasetReader, bounds: tuple[float, float, float, float],
                crs: CRS | str) -> rasterio.windows.Window:
        from rasterio.windows import Window, from_bounds

        b = Transformer.from_crs(CRS.from_user_input(crs), self.crs, always_xy=True).transform_bounds(
            *bounds, densify_pts=21)
        w = from_bounds(*b, transform=ds.transform)
        pad = 4  # bilinear neighbours of the points at the window's edge
        c0, r0 = int(math.floor(w.col_off)) - pad, int(math.floor(w.row_off)) - pad
        c1 = int(math.ceil(w.col_off + w.width)) + pad
        r1 = int(math.ceil(w.row_off + w.height)) + pad
        c0, r0, c1, r1 = max(c0, 0), max(r0, 0), min(c1, ds.width), min(r1, ds.height)
        return Window(c0, r0, max(c1 - c0, 0), max(r1 - r0, 0))

    # -------------------------------------------------------------------------- properties
    @property
    def heights(self) -> np.ndarray:
        return self._grids[0].heights

    @property
    def transform(self) -> Affine:
        return self._grids[0].transform

    @property
    def resolution(self) -> float:
        """Pixel size in CRS units (metres for the sample delivery)."""
        return self._grids[0].resolution

    def height_range(self) -> tuple[float, float]:
        h = self.heights
        return float(np.nanmin(h)), float(np.nanmax(h))

    def median_height(self) -> float:
        """The whole DEM's median (a window's sampler reads the DEM at ≤ 1024 cells a side for it)."""
        if self._median is None:
            if not self._windowed:
                self._median = float(np.nanmedian(self.heights))
            else:
                with rasterio.open(self.path) as ds:
                    f = max(1, math.ceil(max(ds.width, ds.height) / 1024))
                    data = ds.read(self._band, masked=True, out_shape=(max(1, ds.height // f), max(1, ds.width // f)))
                self._median = float(np.nanmedian(np.ma.filled(data.astype(np.float64), np.nan)))
        return self._median

    def bounds(self) -> tuple[float, float, float, float]:
        """(minx, miny, maxx, maxy) of the raster in its own CRS."""
        t = self.transform
        nrow, ncol = self.heights.shape
        xs = [t.c, t.c + t.a * ncol]
        ys = [t.f, t.f + t.e * nrow]
        return min(xs), min(ys), max(xs), max(ys)

    def lonlat_bounds(self, densify: int = 21) -> tuple[float, float, float, float]:
        """(west, south, east, north) degrees enclosing the raster (densified edges)."""
        minx, miny, maxx, maxy = self.bounds()
        f = np.linspace(0.0, 1.0, densify)
        xs = np.concatenate([minx + f * (maxx - minx), np.full(densify, maxx),
                             maxx - f * (maxx - minx), np.full(densify, minx)])
        ys = np.concatenate([np.full(densify, miny), miny + f * (maxy - miny),
                             np.full(densify, maxy), maxy - f * (maxy - miny)])
        to_ll = Transformer.from_crs(self.crs, CRS.from_epsg(4326), always_xy=True)
        lon, lat = to_ll.transform(xs, ys)
        return float(np.min(lon)), float(np.min(lat)), float(np.max(lon)), float(np.max(lat))

    # ---------------------------------------------------------------------------- sampling
    def _grid_for(self, spacing: float | None) -> _Grid:
        if spacing is None or spacing <= self.resolution * 2:
            return self._grids[0]
        wanted = int(math.floor(math.log2(spacing / self.resolution)))
        while len(self._grids) <= wanted:
            prev = self._grids[-1]
            if min(prev.heights.shape) <= 2:
                break
            self._grids.append(_Grid(_block_mean(prev.heights), prev.transform * Affine.scale(2)))
        return self._grids[min(wanted, len(self._grids) - 1)]

    def to_native(self, x: np.ndarray, y: np.ndarray,
                  crs: CRS | str | int | None) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) in ``crs`` (x = easting/longitude first) → the DEM's CRS."""
        if crs is None:
            return x, y
        src = CRS.from_user_input(crs)
        if src == self.crs:
            return x, y
        key = src.to_wkt()
        if key not in self._transformers:
            self._transformers[key] = Transformer.from_crs(src, self.crs, always_xy=True)
        xn, yn = self._transformers[key].transform(x, y)
        return np.asarray(xn), np.asarray(yn)

    def sample(self, x: np.ndarray, y: np.ndarray, crs: CRS | str | int | None = None,
               spacing: float | None = None) -> np.ndarray:
        """Heights at points (x, y) given in ``crs`` (default: the DEM's CRS, axis order x/east
        first). ``spacing`` (DEM units) picks a block-mean overview no coarser than it.
        NaN outside the raster and where the DEM has no data."""
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        shape = np.broadcast(x, y).shape
        x, y = np.broadcast_to(x, shape).ravel(), np.broadcast_to(y, shape).ravel()
        xn, yn = self.to_native(x, y, crs)
        grid = self._grid_for(spacing)
        inv = ~grid.transform
        col, row = inv * (xn, yn)
        out = bilinear_padded(grid.padded, np.asarray(col) - 0.5, np.asarray(row) - 0.5)
        base_col, base_row = ~self.transform * (xn, yn)
        nrow, ncol = self.heights.shape
        outside = ~((base_col >= 0) & (base_col <= ncol) & (base_row >= 0) & (base_row <= nrow))
        out[outside | ~np.isfinite(xn) | ~np.isfinite(yn)] = np.nan
        return out.reshape(shape)


# ------------------------------------------------------------------------------ geoid grid
@dataclass(frozen=True)
class GeoidGrid:
    """EGM96 undulation N sampled every ``step`` degrees over a lon/lat box, bilinear between.

    PROJ's vgridshift interpolates the 15' EGM96 grid bilinearly; re-interpolating it from a
    0.01° lattice differs by well under a millimetre and is ~100x faster for millions of points
    (terrain grids, point clouds)."""

    west: float
    north: float
    step: float
    values: np.ndarray

    @classmethod
    def over(cls, bounds: tuple[float, float, float, float], step: float = 0.01) -> GeoidGrid:
        """Cover (west, south, east, north) degrees, with one step of margin."""
        w, s, e, n = bounds
        w, s, e, n = w - step, s - step, e + step, n + step
        ncol = int(math.ceil((e - w) / step)) + 1
        nrow = int(math.ceil((n - s) / step)) + 1
        lon = w + np.arange(ncol) * step
        lat = n - np.arange(nrow) * step
        lon2, lat2 = np.meshgrid(lon, lat)
        values = geoid_undulation(lon2.ravel(), lat2.ravel()).reshape(nrow, ncol)
        return cls(w, n, step, values)

    def __call__(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        col = (np.asarray(lon) - self.west) / self.step
        row = (self.north - np.asarray(lat)) / self.step
        return bilinear(self.values, col, row)


@lru_cache(maxsize=4)
def _cached_sampler(path: str, mtime_ns: int, size: int) -> DemSampler:
    return DemSampler(path)


def open_dem(path: str | Path) -> DemSampler:
    """A cached :class:`DemSampler` (reloaded when the file changes)."""
    st = os.stat(path)
    return _cached_sampler(str(Path(path).resolve()), st.st_mtime_ns, st.st_size)


def sample_dem(dem_path: str | Path, x: np.ndarray, y: np.ndarray,
               crs: CRS | str | int | None = None) -> np.ndarray:
    """Orthometric (DEM datum) heights at (x, y) in ``crs`` (x = easting/longitude first);
    bilinear, NaN where the DEM has no data."""
    return open_dem(dem_path).sample(x, y, crs)


def ellipsoidal_height_range(dem_path: str | Path, margin: float = 0.5) -> tuple[float, float]:
    """(min, max) ellipsoidal height in metres that terrain built from an orthometric DEM may
    reach: the DEM's range plus the EGM96 undulation over its extent, ± ``margin``. What
    :func:`tiles.validate.validate_path` takes as ``height_range``."""
    sampler = DemSampler(dem_path)
    lo, hi = sampler.height_range()
    w, s, e, n = sampler.lonlat_bounds()
    lon, lat = np.meshgrid(np.linspace(w, e, 5), np.linspace(s, n, 5))
    und = geoid_undulation(lon.ravel(), lat.ravel())
    return lo + float(und.min()) - margin, hi + float(und.max()) + margin
