"""3D Tiles 1.1 tileset.json model and writer, tight oriented boxes, and a quadtree helper.

Bounding boxes are expressed in the tile frame, i.e. the ENU frame whose ENU→ECEF matrix is the
root ``transform`` (glb content is y-up and rotated to z-up by the runtime, so content vertex
``(x, y, z)`` sits at ENU ``(x, -z, y)``: compute boxes from ENU coordinates).

Boxes are z-up: the horizontal axes come from the minimum-area rectangle around the points,
the vertical extent from their z range. A parent's box encloses its own content and every
child's box (:func:`box_enclosing`), so spatial coherence holds by construction.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import shapely

MIN_HALF_SIZE = 0.05  # metres; avoids degenerate (flat) boxes


# ------------------------------------------------------------------------------------ boxes
@dataclass(frozen=True)
class OrientedBox:
    """``center`` (3,) and ``half_axes`` (3,3) whose COLUMNS are the half-axis vectors."""

    center: np.ndarray
    half_axes: np.ndarray

    def to_json(self) -> list[float]:
        """The 12 numbers of a 3D Tiles ``boundingVolume.box``."""
        return [float(v) for v in np.concatenate([self.center, self.half_axes.T.reshape(-1)])]

    @classmethod
    def from_json(cls, values: Sequence[float]) -> OrientedBox:
        v = np.asarray(values, float)
        return cls(v[:3].copy(), v[3:12].reshape(3, 3).T.copy())

    def corners(self) -> np.ndarray:
        signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], float)
        return self.center + signs @ self.half_axes.T

    def contains(self, points: np.ndarray, tol: float = 1e-3) -> np.ndarray:
        """Mask of points inside the box (with ``tol`` metres of slack)."""
        p = np.asarray(points, float).reshape(-1, 3) - self.center
        lengths = np.linalg.norm(self.half_axes, axis=0)
        axes = self.half_axes / lengths
        local = np.abs(p @ axes)
        return np.all(local <= lengths + tol, axis=1)


def box_from_points(points: np.ndarray, pad: float = 0.0) -> OrientedBox:
    """Tight z-up oriented box around (N,3) tile-frame points (minimum-area horizontal rectangle)."""
    pts = np.asarray(points, float).reshape(-1, 3)
    if len(pts) == 0:
        raise ValueError("no points for a bounding box")
    zmin, zmax = float(pts[:, 2].min()), float(pts[:, 2].max())
    # a LineString through the points has their hull without one geometry object per point
    xy = pts[:, :2]
    hull = shapely.convex_hull(shapely.linestrings(xy) if len(xy) > 1 else shapely.points(xy[0]))
    if hull.geom_type == "Polygon" and hull.area > 1e-6:
        rect = np.asarray(shapely.oriented_envelope(hull).exterior.coords)[:4]
        e1, e2 = rect[1] - rect[0], rect[3] - rect[0]
        c_xy = rect[0] + 0.5 * (e1 + e2)
        h1, h2 = 0.5 * e1, 0.5 * e2
    else:  # points or a line: axis-aligned
        lo, hi = pts[:, :2].min(axis=0), pts[:, :2].max(axis=0)
        c_xy = 0.5 * (lo + hi)
        h1, h2 = np.array([0.5 * (hi[0] - lo[0]), 0.0]), np.array([0.0, 0.5 * (hi[1] - lo[1])])
    axes = np.zeros((3, 3))
    for col, h, fallback in ((0, h1, np.array([1.0, 0.0])), (1, h2, np.array([0.0, 1.0]))):
        length = float(np.hypot(*h))
        direction = h / length if length > 1e-9 else fallback
        axes[:2, col] = direction * (max(length, MIN_HALF_SIZE) + pad)
    if np.linalg.norm(h1) <= 1e-9 and np.linalg.norm(h2) > 1e-9:  # keep the frame right-handed
        d = h2 / np.linalg.norm(h2)
        axes[:2, 0] = np.array([d[1], -d[0]]) * (MIN_HALF_SIZE + pad)
    axes[2, 2] = max(0.5 * (zmax - zmin), MIN_HALF_SIZE) + pad
    center = np.array([c_xy[0], c_xy[1], 0.5 * (zmin + zmax)])
    return OrientedBox(center, axes)


def box_enclosing(boxes: Sequence[OrientedBox], points: np.ndarray | None = None) -> OrientedBox:
    """A tight z-up box enclosing other boxes (their corners) and optional extra points."""
    parts = [b.corners() for b in boxes]
    if points is not None and len(points):
        parts.append(np.asarray(points, float).reshape(-1, 3))
    return box_from_points(np.concatenate(parts))


# ------------------------------------------------------------------------------------ tileset
@dataclass
class Tile:
    """One tile; ``box`` in the tile frame; ``content_uri`` relative to tileset.json."""

    box: OrientedBox
    geometric_error: float
    content_uri: str | None = None
    children: list[Tile] = field(default_factory=list)
    refine: str | None = "REPLACE"
    transform: Sequence[float] | None = None
    content_box: OrientedBox | None = None
    extras: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"boundingVolume": {"box": self.box.to_json()},
                             "geometricError": float(self.geometric_error)}
        if self.refine:
            d["refine"] = self.refine
        if self.transform is not None:
            d["transform"] = [float(v) for v in self.transform]
        if self.content_uri:
            content: dict[str, Any] = {"uri": self.content_uri}
            if self.content_box is not None:
                content["boundingVolume"] = {"box": self.content_box.to_json()}
            d["content"] = content
        if self.children:
            d["children"] = [c.to_dict() for c in self.children]
        if self.extras:
            d["extras"] = self.extras
        return d

    def walk(self) -> Iterator[Tile]:
        yield self
        for c in self.children:
            yield from c.walk()


@dataclass
class Tileset:
    """A 3D Tiles 1.1 tileset; ``geometric_error`` is the error when nothing is rendered."""

    root: Tile
    geometric_error: float
    tileset_version: str | None = None
    extras: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        asset: dict[str, Any] = {"version": "1.1", "generator": "onemap"}
        if self.tileset_version:
            asset["tilesetVersion"] = self.tileset_version
        d: dict[str, Any] = {"asset": asset, "geometricError": float(self.geometric_error),
                             "root": self.root.to_dict()}
        extras = dict(self.extras or {})
        if "heights" not in extras:  # the geoid the run used (--geoid): heights are only as good as it
            from core.frames import active_geoid

            extras["heights"] = active_geoid().metadata()
        d["extras"] = extras
        return d

    def write(self, path: Path | str) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
        tmp.write_text(json.dumps(self.to_dict(), separators=(",", ":")), encoding="utf-8")
        os.replace(tmp, path)
        return path


def enforce_monotonic_errors(tile: Tile) -> float:
    """Make every tile's geometricError ≥ its children's (returns the root's)."""
    if tile.children:
        child_max = max(enforce_monotonic_errors(c) for c in tile.children)
        tile.geometric_error = max(tile.geometric_error, child_max)
    return tile.geometric_error


# ------------------------------------------------------------------------------------ quadtree
@dataclass
class QuadNode:
    """A quadtree node over item positions; ``indices`` are the items inside (all levels)."""

    level: int
    x: int
    y: int
    bounds: tuple[float, float, float, float]  # xmin, ymin, xmax, ymax
    indices: np.ndarray
    children: list[QuadNode] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.level}/{self.x}/{self.y}"

    @property
    def is_leaf(self) -> bool:
        return not self.children

    def walk(self) -> Iterator[QuadNode]:
        yield self
        for c in self.children:
            yield from c.walk()

    def leaves(self) -> Iterator[QuadNode]:
        return (n for n in self.walk() if n.is_leaf)

    def post_order(self) -> Iterator[QuadNode]:
        for c in self.children:
            yield from c.post_order()
        yield self


def snapped_square(xy: np.ndarray, snap: float = 250.0) -> tuple[float, float, float, float]:
    """A square covering the points, origin snapped to ``snap`` metres, side ``snap``·2^k.

    Small edits to the data leave it unchanged, so the quadtree keys stay stable.
    """
    xy = np.asarray(xy, float).reshape(-1, 2)
    lo = np.floor(xy.min(axis=0) / snap) * snap
    extent = float(np.max(xy.max(axis=0) - lo))
    side = snap
    while side <= extent:
        side *= 2.0
    return float(lo[0]), float(lo[1]), float(lo[0] + side), float(lo[1] + side)


def build_quadtree(
    xy: np.ndarray,
    max_items: int = 1000,
    bounds: tuple[float, float, float, float] | None = None,
    max_depth: int = 12,
) -> QuadNode:
    """Split a square until every leaf holds ≤ ``max_items`` points (or ``max_depth``).

    Empty quadrants are dropped. Child (x, y) indices follow the usual z/x/y scheme with y
    growing northwards (TMS-like) from the root square's south-west corner.
    """
    xy = np.asarray(xy, float).reshape(-1, 2)
    bounds = bounds or snapped_square(xy)
    root = QuadNode(0, 0, 0, bounds, np.arange(len(xy)))
    stack = [root]
    while stack:
        node = stack.pop()
        if len(node.indices) <= max_items or node.level >= max_depth:
            continue
        xmin, ymin, xmax, ymax = node.bounds
        xm, ym = 0.5 * (xmin + xmax), 0.5 * (ymin + ymax)
        p = xy[node.indices]
        east = p[:, 0] >= xm
        north = p[:, 1] >= ym
        for dx in (0, 1):
            for dy in (0, 1):
                mask = (east == bool(dx)) & (north == bool(dy))
                if not mask.any():
                    continue
                b = (xm if dx else xmin, ym if dy else ymin, xmax if dx else xm, ymax if dy else ym)
                child = QuadNode(node.level + 1, node.x * 2 + dx, node.y * 2 + dy, b, node.indices[mask])
                node.children.append(child)
                stack.append(child)
    return root
