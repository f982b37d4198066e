"""Ground heights from a DEM GeoTIFF (orthometric), for placing objects on the terrain.

- :meth:`Ground.at_points` — bilinear heights at points (trees, furniture, road vertices);
- :meth:`Ground.min_under` — the lowest ground under each polygon (building bases: walls reach
  down to it so nothing floats): min of bilinear samples at the vertices and of every DEM cell
  the polygon touches.

Points are given in any CRS and transformed to the DEM's CRS. NaN marks "no data here".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import rasterio.windows
import shapely
from pyproj import CRS, Transformer


def _apply(t: rasterio.Affine, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, float), np.asarray(y, float)
    return t.a * x + t.b * y + t.c, t.d * x + t.e * y + t.f


@dataclass
class Ground:
    """A DEM band held in memory (window covering the data), with its affine transform."""

    path: Path
    crs: CRS
    heights: np.ndarray  # (rows, cols) float64, NaN = nodata
    transform: rasterio.Affine

    @classmethod
    def open(cls, path: Path | str, bounds: tuple[float, float, float, float] | None = None,
             bounds_crs: CRS | str | None = None, margin_cells: int = 2) -> Ground:
        """Read band 1 (optionally only the window covering ``bounds`` given in ``bounds_crs``)."""
        path = Path(path)
        with rasterio.open(path) as ds:
            if ds.crs is None:
                raise ValueError(f"{path}: DEM has no CRS")
            crs = CRS.from_user_input(ds.crs.to_wkt())
            window = None
            if bounds is not None:
                if bounds_crs is not None and not CRS.from_user_input(bounds_crs).equals(crs):
                    t = Transformer.from_crs(bounds_crs, crs, always_xy=True)
                    bounds = t.transform_bounds(*bounds)
                w = rasterio.windows.from_bounds(*bounds, transform=ds.transform)
                col0, row0 = math.floor(w.col_off) - margin_cells, math.floor(w.row_off) - margin_cells
                window = rasterio.windows.Window(col0, row0, math.ceil(w.width) + 2 * margin_cells + 1,
                                                 math.ceil(w.height) + 2 * margin_cells + 1)
                window = window.intersection(rasterio.windows.Window(0, 0, ds.width, ds.height))
            band = ds.read(1, window=window, masked=True).astype(np.float64)
            heights = band.filled(np.nan)
            transform = ds.window_transform(window) if window is not None else ds.transform
        return cls(path, crs, heights, transform)

    def _to_dem(self, x: np.ndarray, y: np.ndarray, crs: CRS | str) -> tuple[np.ndarray, np.ndarray]:
        src = CRS.from_user_input(crs)
        if src.equals(self.crs):
            return np.asarray(x, float), np.asarray(y, float)
        xx, yy = Transformer.from_crs(src, self.crs, always_xy=True).transform(x, y)
        return np.asarray(xx), np.asarray(yy)

    def _bilinear(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        col, row = _apply(~self.transform, x, y)
        col, row = col - 0.5, row - 0.5  # cell centres
        rows, cols = self.heights.shape
        c0 = np.floor(col).astype(np.int64)
        r0 = np.floor(row).astype(np.int64)
        fc, fr = col - c0, row - r0
        out = np.zeros(len(x))
        weight = np.zeros(len(x))
        for dr, dc, w in ((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc), (1, 0, fr * (1 - fc)),
                          (1, 1, fr * fc)):
            rr, cc = r0 + dr, c0 + dc
            inside = (rr >= 0) & (rr < rows) & (cc >= 0) & (cc < cols)
            v = np.full(len(x), np.nan)
            v[inside] = self.heights[rr[inside], cc[inside]]
            ok = np.isfinite(v) & (w > 0)
            out[ok] += w[ok] * v[ok]
            weight[ok] += w[ok]
        with np.errstate(invalid="ignore", divide="ignore"):
            res = out / weight
        res[weight < 1e-9] = np.nan
        return res

    def at_points(self, x: np.ndarray, y: np.ndarray, crs: CRS | str) -> np.ndarray:
        """Bilinear orthometric ground height at points (NaN outside the DEM / on nodata)."""
        xx, yy = self._to_dem(np.asarray(x, float), np.asarray(y, float), crs)
        return self._bilinear(xx, yy)

    def min_under(self, polygons: np.ndarray, crs: CRS | str) -> np.ndarray:
        """Lowest ground under each polygon (NaN where the DEM has no data under it).

        The DEM surface (bilinear between cell centres) is sampled at the polygon's vertices and
        edge midpoints and at every cell centre inside the polygon.
        """
        polygons = np.asarray(polygons, dtype=object)
        n = len(polygons)
        result = np.full(n, np.inf)
        if n == 0:
            return result
        src = CRS.from_user_input(crs)
        if not src.equals(self.crs):
            t = Transformer.from_crs(src, self.crs, always_xy=True)
            polygons = shapely.transform(polygons, lambda c: np.column_stack(t.transform(c[:, 0], c[:, 1])))
        parts, part_poly = shapely.get_parts(polygons, return_index=True)  # MultiPolygon → its polygons
        rings, ring_part = shapely.get_rings(parts, return_index=True)
        ring_poly = part_poly[ring_part]
        coords, ring_idx = shapely.get_coordinates(rings, return_index=True)
        same = ring_idx[1:] == ring_idx[:-1]
        mids = 0.5 * (coords[1:][same] + coords[:-1][same])  # edge midpoints
        coords = np.concatenate([coords, mids])
        idx = np.concatenate([ring_poly[ring_idx], ring_poly[ring_idx[1:][same]]])
        vals = self._bilinear(coords[:, 0], coords[:, 1])
        ok = np.isfinite(vals)
        np.minimum.at(result, idx[ok], vals[ok])
        # cell centres inside each polygon (candidates from the polygon's bounding box)
        inv = ~self.transform
        b = shapely.bounds(polygons)
        c_a, r_a = _apply(inv, b[:, 0], b[:, 3])
        c_b, r_b = _apply(inv, b[:, 2], b[:, 1])
        rows, cols = self.heights.shape
        c0 = np.clip(np.floor(np.minimum(c_a, c_b)).astype(np.int64), 0, cols - 1)
        c1 = np.clip(np.floor(np.maximum(c_a, c_b)).astype(np.int64), 0, cols - 1)
        r0 = np.clip(np.floor(np.minimum(r_a, r_b)).astype(np.int64), 0, rows - 1)
        r1 = np.clip(np.floor(np.maximum(r_a, r_b)).astype(np.int64), 0, rows - 1)
        nc, nr = c1 - c0 + 1, r1 - r0 + 1
        counts = nc * nr
        total = int(counts.sum())
        if total:
            owner = np.repeat(np.arange(n), counts)
            k = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
            cc = c0[owner] + k % nc[owner]
            rr = r0[owner] + k // nc[owner]
            x, y = _apply(self.transform, cc + 0.5, rr + 0.5)
            shapely.prepare(polygons)
            inside = shapely.contains_xy(polygons[owner], x, y)
            v = self.heights[rr[inside], cc[inside]]
            good = np.isfinite(v)
            np.minimum.at(result, owner[inside][good], v[good])
        result[~np.isfinite(result)] = np.nan
        return result
