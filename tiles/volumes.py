"""3D Tiles bounding volumes (box, sphere, region) and the column-major 4x4 transforms.

:func:`volume_excess` measures how far content points lie outside a volume; the official
3D Tiles validator does not check this (open upstream issue), :mod:`tiles.validate` does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

ABS_TOL = 0.02  # metres of slack for "inside the bounding volume" (float32 content)
REL_TOL = 1e-6
# glTF y-up → 3D Tiles z-up (the fixed rotation every glTF content gets)
Y_UP_TO_Z_UP = np.array([[1.0, 0, 0, 0], [0, 0, -1.0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1.0]])


def column_major(values: Iterable[float] | None) -> np.ndarray:
    """4x4 matrix from 16 column-major numbers (a tile ``transform``, a glTF node ``matrix``);
    identity if None."""
    if values is None:
        return np.eye(4)
    return np.asarray(list(values), dtype=np.float64).reshape(4, 4).T


def apply_matrix(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Points (N,3) through an affine 4x4."""
    return pts @ m[:3, :3].T + m[:3, 3]


def box_corners(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The 8 corners (8,3) of the axis-aligned box [lo, hi]."""
    return np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])


def well_formed(volume: dict[str, Any]) -> bool:
    for key, size in (("box", 12), ("sphere", 4), ("region", 6)):
        if key in volume:
            v = volume[key]
            return (isinstance(v, list) and len(v) == size
                    and all(isinstance(x, (int, float)) and math.isfinite(x) for x in v))
    return False


def volume_excess(volume: dict[str, Any], pts_tile: np.ndarray, world: np.ndarray) -> tuple[float, int]:
    """(largest distance in metres outside the volume, number of points outside) for points
    given in the tile frame; ``world`` maps the tile frame to ECEF (for regions)."""
    if len(pts_tile) == 0 or not well_formed(volume):
        return 0.0, 0  # malformed volumes are reported by the schema check
    if "box" in volume:
        b = np.asarray(volume["box"], dtype=np.float64)
        centre, axes = b[:3], b[3:12].reshape(3, 3)  # rows = half-axis vectors
        lengths = np.linalg.norm(axes, axis=1)
        d = pts_tile - centre
        if np.all(lengths > 0) and abs(np.linalg.det(axes)) > 1e-12 * np.prod(lengths):
            coords = np.linalg.solve(axes.T, d.T).T  # d = coords @ axes
            excess = (np.abs(coords) - 1.0) * lengths
        else:  # degenerate (flat) box: project on the non-zero axes
            excess = np.zeros_like(d)
            for k in range(3):
                if lengths[k] > 0:
                    excess[:, k] = np.abs(d @ (axes[k] / lengths[k])) - lengths[k]
        tol = ABS_TOL + REL_TOL * float(np.max(lengths) + np.linalg.norm(centre))
        worst = np.max(excess, axis=1)
        return float(max(worst.max(), 0.0)), int(np.sum(worst > tol))
    if "sphere" in volume:
        s = np.asarray(volume["sphere"], dtype=np.float64)
        dist = np.linalg.norm(pts_tile - s[:3], axis=1) - s[3]
        tol = ABS_TOL + REL_TOL * float(s[3] + np.linalg.norm(s[:3]))
        return float(max(dist.max(), 0.0)), int(np.sum(dist > tol))
    if "region" in volume:
        from core.frames import ecef_to_lonlat_ellipsoidal

        w, s, e, n, hmin, hmax = (float(v) for v in volume["region"])
        llh = ecef_to_lonlat_ellipsoidal(apply_matrix(world, pts_tile))
        lon, lat, h = np.radians(llh[:, 0]), np.radians(llh[:, 1]), llh[:, 2]
        r = 6_378_137.0
        if e < w:  # crosses the antimeridian
            lon = np.where(lon < w, lon + 2 * math.pi, lon)
            e += 2 * math.pi
        out = np.maximum.reduce([
            (w - lon) * r * np.cos(lat), (lon - e) * r * np.cos(lat), (s - lat) * r, (lat - n) * r,
            hmin - h, h - hmax, np.zeros_like(h),
        ])
        return float(out.max()), int(np.sum(out > ABS_TOL + 1e-3))
    return 0.0, 0
