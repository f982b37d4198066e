"""Ground: dem.tif (2 m, orthometric, district + 200 m margin) and a LAS 1.4 point cloud block."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import laspy
import numpy as np
import rasterio
import shapely
from pyproj import CRS
from rasterio.transform import from_origin

from .common import (
    CRS_4548,
    DEM_MARGIN_M,
    DEM_RES_M,
    FIXED_DATE,
    LAKE_LEVEL_M,
    RIVER_LEVEL_M,
    District,
    sample_in_polygon,
)

NODATA = -9999.0
POINTCLOUD_BLOCK_M = 300.0


def dem_grid(boundary) -> tuple[float, float, int, int]:
    """(x0, y_top, ncols, nrows) of the DEM of one district copy, snapped to the 2 m grid."""
    minx, miny, maxx, maxy = boundary.bounds
    x0 = math.floor((minx - DEM_MARGIN_M) / DEM_RES_M) * DEM_RES_M
    y0 = math.floor((miny - DEM_MARGIN_M) / DEM_RES_M) * DEM_RES_M
    x1 = math.ceil((maxx + DEM_MARGIN_M) / DEM_RES_M) * DEM_RES_M
    y1 = math.ceil((maxy + DEM_MARGIN_M) / DEM_RES_M) * DEM_RES_M
    return x0, y1, int(round((x1 - x0) / DEM_RES_M)), int(round((y1 - y0) / DEM_RES_M))


def _smoothstep(t):
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _lake_q(d: District, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """layout.lake_q with the shore radius read from a 4096-step table (same shape, much faster)."""
    p = d.lake_params
    theta_tab = np.linspace(-np.pi, np.pi, 4097)
    rho_tab = p["rho"](theta_tab)
    dx, dy = x - p["cx"], y - p["cy"]
    c, s = np.cos(-p["rot"]), np.sin(-p["rot"])
    u = (dx * c - dy * s) / p["a"]
    v = (dx * s + dy * c) / p["b"]
    return np.hypot(u, v) / np.interp(np.arctan2(v, u), theta_tab, rho_tab)


def _params(rng: np.random.Generator, d: District) -> dict:
    p = d.extras.get("terrain_params")
    if p is None:
        cx, cy = d.boundary.centroid.x, d.boundary.centroid.y
        p = {
            "hills": [
                (cx + rng.uniform(-1500, 1200), cy + rng.uniform(-1100, 1100), rng.uniform(4, 11),
                 rng.uniform(280, 650))
                for _ in range(6)
            ],
            "waves": [
                (rng.uniform(0, 2 * np.pi), rng.uniform(500, 1600), rng.uniform(0.4, 1.2), rng.uniform(0, 2 * np.pi))
                for _ in range(4)
            ],
            "cx": cx,
            "cy": cy,
        }
        d.extras["terrain_params"] = p
    return p


def ground_height(rng: np.random.Generator, d: District, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Orthometric ground height on the grid xs (columns) x ys (rows); separable terms as outer products."""
    p = _params(rng, d)
    dx, dy = xs - p["cx"], ys - p["cy"]
    h = np.full((len(ys), len(xs)), 24.0)
    for hx, hy, amp, sig in p["hills"]:
        h += amp * np.outer(np.exp(-((ys - hy) ** 2) / (2 * sig * sig)), np.exp(-((xs - hx) ** 2) / (2 * sig * sig)))
    for ang, lam, amp, ph in p["waves"]:
        k = 2 * np.pi / lam
        ax, ay = k * dx * np.cos(ang), k * dy * np.sin(ang) + ph
        h += amp * (np.outer(np.cos(ay), np.sin(ax)) + np.outer(np.sin(ay), np.cos(ax)))
    h -= dx[None, :] * 0.0012  # the land falls gently towards the lake (east)
    np.clip(h, 19.5, 40.0, out=h)
    xx, yy = np.meshgrid(xs, ys)
    # lake: shore just above the water, bed below it
    q = _lake_q(d, xx, yy)
    shore = LAKE_LEVEL_M + 1.2
    h = np.where(q >= 1, shore + (h - shore) * _smoothstep((q - 1) / 0.3), h)
    h = np.where(q < 1, LAKE_LEVEL_M - 0.4 - 3.6 * np.clip(np.sqrt(np.clip(1 - q, 0, 1) / 0.25), 0, 1), h)
    # river channel: distance to the (x-monotonic) centreline
    rl = np.asarray(d.river_line.coords)
    yr = np.interp(xs, rl[:, 0], rl[:, 1])
    slope = np.interp(xs, rl[:, 0], np.gradient(rl[:, 1], rl[:, 0]))
    dr = np.abs(ys[:, None] - yr[None, :]) / np.sqrt(1 + slope * slope)[None, :]
    dr[:, (xs < rl[0, 0]) | (xs > rl[-1, 0])] = 1e6
    hw = d.river_width / 2
    bank = RIVER_LEVEL_M + 1.3
    h = np.where(dr >= hw, np.minimum(h, bank + (h - bank) * _smoothstep((dr - hw) / 90.0)), h)
    bed = RIVER_LEVEL_M - 0.4 - 1.8 * (1 - (dr / hw) ** 2)
    return np.where(dr < hw, np.minimum(bed, h), h)


def build_dem(rng: np.random.Generator, d: District) -> None:
    x0, y_top, ncols, nrows = dem_grid(d.boundary)
    xs = x0 + (np.arange(ncols) + 0.5) * DEM_RES_M
    ys = y_top - (np.arange(nrows) + 0.5) * DEM_RES_M
    z = ground_height(rng, d, xs, ys)
    d.dem = (np.round(z, 2).astype(np.float32), from_origin(x0, y_top, DEM_RES_M, DEM_RES_M))


def write_dem(path: Path, array: np.ndarray, transform) -> None:
    profile = {
        "driver": "GTiff",
        "dtype": "float32",
        "count": 1,
        "width": array.shape[1],
        "height": array.shape[0],
        "crs": CRS_4548,
        "transform": transform,
        "nodata": NODATA,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
        "predictor": 3,
    }
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(array, 1)


def sample_dem(d: District, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    arr, tr = d.dem
    col = np.clip(((x - tr.c) / tr.a - 0.5).astype(int), 0, arr.shape[1] - 1)
    row = np.clip(((y - tr.f) / tr.e - 0.5).astype(int), 0, arr.shape[0] - 1)
    return arr[row, col].astype(float)


def build_pointcloud(rng: np.random.Generator, d: District) -> dict:
    """Points of a ~300 m block around the building nearest the district centre."""
    b = d.buildings
    cent = shapely.get_coordinates(shapely.centroid(b.geometry.values))
    c0 = np.array([d.boundary.centroid.x, d.boundary.centroid.y])
    cx, cy = cent[np.argmin(np.hypot(*(cent - c0).T))]
    cx, cy = round(cx / 10) * 10.0, round(cy / 10) * 10.0
    half = POINTCLOUD_BLOCK_M / 2
    block = shapely.box(cx - half, cy - half, cx + half, cy + half)
    xs, zs, cls, rgb = [], [], [], []
    # buildings: roofs (~1 pt/m2) and walls (1 m x 1.5 m)
    idx = np.flatnonzero(shapely.within(b.geometry.values, block))
    heights = d.extras["building_height"][idx]
    use = b["use"].to_numpy()[idx]
    palette = {
        "residential": (205, 190, 170),
        "commercial": (170, 120, 100),
        "courtyard_house": (120, 110, 105),
        "school": (210, 150, 120),
        "office": (150, 170, 190),
        "hospital": (230, 230, 230),
    }
    for g, h, u in zip(b.geometry.values[idx], heights, use, strict=True):
        ring = shapely.get_coordinates(g.exterior)
        base = float(sample_dem(d, ring[:, 0], ring[:, 1]).min())
        col = np.array(palette.get(u, (180, 180, 175)))
        n = max(int(g.area), 4)
        roof = sample_in_polygon(rng, g, n)
        xs.append(roof)
        zs.append(base + h + rng.normal(0, 0.03, len(roof)))
        cls.append(np.full(len(roof), 6))
        rgb.append(np.clip(col * 0.85 + rng.normal(0, 6, (len(roof), 3)), 0, 255))
        per = g.exterior
        s = np.arange(0, per.length, 1.0)
        wall_xy = shapely.get_coordinates(shapely.line_interpolate_point(per, s))
        levels = np.arange(0.5, h, 1.5)
        wx = np.repeat(wall_xy, len(levels), axis=0)
        wz = base + np.tile(levels, len(wall_xy))
        xs.append(wx + rng.normal(0, 0.03, wx.shape))
        zs.append(wz)
        cls.append(np.full(len(wx), 6))
        rgb.append(np.clip(col + rng.normal(0, 8, (len(wx), 3)), 0, 255))
    # trees: crown ellipsoids
    t = d.trees
    tin = shapely.within(t.geometry.values, block)
    txy = shapely.get_coordinates(t.geometry.values[tin])
    th = t["height"].to_numpy()[tin]
    tc = t["crown_diameter"].to_numpy()[tin]
    if len(txy):
        k = 80
        n = len(txy) * k
        u = rng.normal(size=(n, 3))
        u /= np.linalg.norm(u, axis=1)[:, None]
        r = np.repeat(tc / 2, k)
        ch = np.repeat(np.minimum(th * 0.45, tc * 0.6), k)
        top = np.repeat(th, k)
        base = sample_dem(d, txy[:, 0], txy[:, 1])
        px = np.repeat(txy[:, 0], k) + u[:, 0] * r
        py = np.repeat(txy[:, 1], k) + u[:, 1] * r
        pz = np.repeat(base, k) + top - ch + u[:, 2] * ch
        xs.append(np.column_stack([px, py]))
        zs.append(pz)
        cls.append(np.full(n, 5))
        rgb.append(np.clip(np.array([60, 110, 50]) + rng.normal(0, 14, (n, 3)), 0, 255))
    # ground: 1 m lattice with jitter, outside buildings and water
    gx, gy = np.meshgrid(
        np.arange(cx - half + 0.5, cx + half, 1.0), np.arange(cy - half + 0.5, cy + half, 1.0)
    )
    gxy = np.column_stack([gx.ravel(), gy.ravel()]) + rng.uniform(-0.3, 0.3, (gx.size, 2))
    blds = shapely.STRtree(b.geometry.values[idx]) if len(idx) else None
    keep = np.ones(len(gxy), dtype=bool)
    gp = shapely.points(gxy)
    if blds is not None:
        keep[blds.query(gp, predicate="intersects")[0]] = False
    water = shapely.union(d.lake, d.river)
    keep &= ~shapely.contains_xy(water, gxy[:, 0], gxy[:, 1])
    gxy = gxy[keep]
    road_tree = shapely.STRtree(
        shapely.buffer(d.roads.geometry.values, d.roads["width"].to_numpy() / 2, cap_style="flat")
    )
    on_road = np.zeros(len(gxy), dtype=bool)
    on_road[road_tree.query(shapely.points(gxy), predicate="intersects")[0]] = True
    gcol = np.where(on_road[:, None], np.array([75, 75, 78]), np.array([125, 140, 95]))
    xs.append(gxy)
    zs.append(sample_dem(d, gxy[:, 0], gxy[:, 1]) + rng.normal(0, 0.02, len(gxy)))
    cls.append(np.full(len(gxy), 2))
    rgb.append(np.clip(gcol + rng.normal(0, 7, (len(gxy), 3)), 0, 255))
    xy = np.vstack(xs)
    z = np.concatenate(zs)
    cl = np.concatenate(cls)
    col = np.vstack(rgb)
    order = np.lexsort((xy[:, 0], xy[:, 1]))  # scanline order: stable and compressible
    d.extras["pointcloud"] = (xy[order], z[order], cl[order], col[order])
    return {"centre": (cx, cy)}


def write_las(path: Path, xy: np.ndarray, z: np.ndarray, cl: np.ndarray, rgb: np.ndarray) -> None:
    header = laspy.LasHeader(point_format=7, version="1.4")
    header.scales = np.array([0.01, 0.01, 0.01])
    header.offsets = np.array(
        [math.floor(xy[:, 0].min() / 1000) * 1000, math.floor(xy[:, 1].min() / 1000) * 1000, 0.0]
    )
    header.add_crs(CRS.from_user_input(CRS_4548))
    header.creation_date = dt.date.fromisoformat(FIXED_DATE)
    header.generating_software = "onemap sample generator"
    header.system_identifier = "onemap"
    las = laspy.LasData(header)
    las.x, las.y, las.z = xy[:, 0], xy[:, 1], z
    las.classification = cl.astype(np.uint8)
    c16 = np.round(rgb).astype(np.uint16) * 257
    las.red, las.green, las.blue = c16[:, 0], c16[:, 1], c16[:, 2]
    las.write(str(path))
