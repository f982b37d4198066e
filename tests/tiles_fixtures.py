"""Small hand-made inputs for the roads / vegetation / furniture tile tests (EPSG:4548)."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from rasterio.transform import from_origin
from shapely.geometry import Point, Polygon

X0, Y0 = 536_000.0, 3_644_000.0  # Jiefang Street, EPSG:4548
CRS_4548 = "EPSG:4548"
DEM_SLOPE_X, DEM_SLOPE_Y, DEM_BASE = 0.004, -0.002, 18.0


def dem_plane(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The synthetic DEM's ground (orthometric): a tilted plane, so bilinear sampling is exact."""
    return DEM_BASE + DEM_SLOPE_X * (np.asarray(x) - X0) + DEM_SLOPE_Y * (np.asarray(y) - Y0)


def write_dem(path: Path, half: float = 800.0, res: float = 2.0, valley: tuple[float, float] | None = None,
              depth: float = 0.0) -> Path:
    """GeoTIFF float32 EPSG:4548 around (X0, Y0); optional valley (x range) ``depth`` m deep."""
    n = int(2 * half / res)
    xs = X0 - half + res * (np.arange(n) + 0.5)
    ys = Y0 + half - res * (np.arange(n) + 0.5)
    xx, yy = np.meshgrid(xs, ys)
    z = dem_plane(xx, yy)
    if valley is not None:
        z = np.where((xx > valley[0]) & (xx < valley[1]), z - depth, z)
    with rasterio.open(path, "w", driver="GTiff", width=n, height=n, count=1, dtype="float32", crs=CRS_4548,
                       transform=from_origin(X0 - half, Y0 + half, res, res), nodata=-9999.0) as ds:
        ds.write(z.astype(np.float32), 1)
    return path


def write_boundary(path: Path, half: float = 600.0) -> Path:
    poly = Polygon([(X0 - half, Y0 - half), (X0 + half, Y0 - half), (X0 + half, Y0 + half),
                    (X0 - half, Y0 + half)])
    gpd.GeoDataFrame({"name": ["解放街道"]}, geometry=[poly], crs=CRS_4548).to_file(path, layer="boundary")
    return path


def write_points(path: Path, layer: str, rows: list[dict], crs: str = CRS_4548) -> Path:
    geoms = [Point(r.pop("x"), r.pop("y")) if "x" in r else r.pop("geometry") for r in rows]
    gpd.GeoDataFrame(rows, geometry=geoms, crs=crs).to_file(path, layer=layer)
    return path


def leaf_contents(tileset_path: Path) -> list[Path]:
    """Content files of the leaf tiles of a tileset.json (no external tilesets followed)."""
    import json

    doc = json.loads(Path(tileset_path).read_text())
    out: list[Path] = []

    def walk(tile: dict) -> None:
        if not tile.get("children") and "content" in tile:
            out.append(Path(tileset_path).parent / tile["content"]["uri"])
        for child in tile.get("children", []):
            walk(child)

    walk(doc["root"])
    return out


def all_contents(tileset_path: Path) -> list[Path]:
    import json

    doc = json.loads(Path(tileset_path).read_text())
    out: list[Path] = []

    def walk(tile: dict) -> None:
        if "content" in tile:
            out.append(Path(tileset_path).parent / tile["content"]["uri"])
        for child in tile.get("children", []):
            walk(child)

    walk(doc["root"])
    return out


def root_matrix(tileset_path: Path) -> np.ndarray:
    """The root transform as a 4x4 row-major matrix (ENU → ECEF)."""
    import json

    doc = json.loads(Path(tileset_path).read_text())
    return np.asarray(doc["root"]["transform"], float).reshape(4, 4).T


def enu_to_ecef(m: np.ndarray, enu: np.ndarray) -> np.ndarray:
    return np.asarray(enu, float) @ m[:3, :3].T + m[:3, 3]


def horizontal_error_m(lon: np.ndarray, lat: np.ndarray, lon_ref: np.ndarray,
                       lat_ref: np.ndarray) -> np.ndarray:
    """Metres between lon/lat pairs (local flat approximation, fine at centimetre scale)."""
    k = 111_320.0
    dx = (np.asarray(lon) - lon_ref) * k * np.cos(np.radians(lat_ref))
    dy = (np.asarray(lat) - lat_ref) * 110_574.0
    return np.hypot(dx, dy)


def tileset_errors(tileset_path: Path) -> list[tuple[float, list[float]]]:
    """(geometricError, [children's errors]) for every tile."""
    import json

    doc = json.loads(Path(tileset_path).read_text())
    out = []

    def walk(tile: dict) -> None:
        out.append((tile["geometricError"], [c["geometricError"] for c in tile.get("children", [])]))
        for c in tile.get("children", []):
            walk(c)

    walk(doc["root"])
    return out
