"""Real 3D surfaces (e.g. CityJSON roof/wall/ground polygons) → a flat-shaded triangle mesh.

Each planar polygon (outer ring + holes, (n,3) vertices) is projected onto its own plane (Newell
normal), triangulated there with ``mapbox_earcut`` (holes respected) and the triangles are put
back on the ORIGINAL 3D vertices, so the mesh passes exactly through the source coordinates. The
triangles are wound counter-clockwise around the polygon's own normal (CityJSON orders rings
counter-clockwise seen from outside). Vertices are not shared between surfaces (flat shading).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import mapbox_earcut
import numpy as np

from tiles.building_mesh import MeshArrays, ToEnu


@dataclass
class SurfaceSet:
    """Planar polygons of many buildings: ``rings[i]`` the rings of polygon i (first outer)."""

    rings: list[list[np.ndarray]]
    building: np.ndarray  # (P,) building index
    is_roof: np.ndarray  # (P,) bool

    def __len__(self) -> int:
        return len(self.rings)

    def select(self, buildings: np.ndarray, renumber: np.ndarray | None = None) -> SurfaceSet:
        keep = np.isin(self.building, buildings)
        idx = np.flatnonzero(keep)
        b = self.building[idx]
        return SurfaceSet([self.rings[i] for i in idx], renumber[b] if renumber is not None else b,
                          self.is_roof[idx])


def newell_normal(ring: np.ndarray) -> np.ndarray:
    """Unit normal of a (nearly) planar ring by Newell's method (zeros if degenerate)."""
    p = ring - ring.mean(axis=0)
    q = np.roll(p, -1, axis=0)
    n = np.array([np.sum((p[:, 1] - q[:, 1]) * (p[:, 2] + q[:, 2])),
                  np.sum((p[:, 2] - q[:, 2]) * (p[:, 0] + q[:, 0])),
                  np.sum((p[:, 0] - q[:, 0]) * (p[:, 1] + q[:, 1]))])
    length = np.linalg.norm(n)
    return n / length if length > 1e-12 else np.zeros(3)


def triangulate_polygon(rings: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vertices (V,3), triangles (T,3) into them, unit normal) of one planar polygon with holes."""
    rings = [np.asarray(r, float) for r in rings if len(r) >= 3]
    if not rings:
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64), np.zeros(3)
    n = newell_normal(rings[0])
    if not n.any():
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64), n
    verts = np.concatenate(rings)
    origin = verts.mean(axis=0)
    helper = np.array([1.0, 0.0, 0.0]) if abs(n[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = np.cross(helper, n)
    u /= np.linalg.norm(u)
    v = np.cross(n, u)
    uv = np.column_stack([(verts - origin) @ u, (verts - origin) @ v])
    ends = np.cumsum([len(r) for r in rings]).astype(np.uint32)
    tri = mapbox_earcut.triangulate_float64(uv, ends).astype(np.int64).reshape(-1, 3)
    if len(tri):
        a, b, c = verts[tri[:, 0]], verts[tri[:, 1]], verts[tri[:, 2]]
        flip = np.cross(b - a, c - a) @ n < 0
        tri[flip] = tri[flip][:, [0, 2, 1]]
    return verts, tri, n


def surfaces_to_mesh(surfaces: SurfaceSet, to_enu: ToEnu) -> MeshArrays:
    """Every polygon triangulated on its plane, vertices mapped through ``to_enu(x, y, z)``."""
    positions, normals, building, is_roof, indices = [], [], [], [], []
    offset = 0
    all_verts, owner = [], []
    tris: list[np.ndarray] = []
    for i, rings in enumerate(surfaces.rings):
        verts, tri, _ = triangulate_polygon(rings)
        if not len(tri):
            continue
        all_verts.append(verts)
        owner.append(np.full(len(verts), i))
        tris.append(tri)
    if not all_verts:
        return MeshArrays(np.zeros((0, 3)), np.zeros((0, 3), np.float32), np.zeros(0, np.int32),
                          np.zeros(0, bool), np.zeros(0, np.uint32))
    xyz = np.concatenate(all_verts)
    enu = to_enu(xyz[:, 0], xyz[:, 1], xyz[:, 2])
    start = 0
    for verts, tri, own in zip(all_verts, tris, owner, strict=True):
        p = enu[start:start + len(verts)]
        start += len(verts)
        a, b, c = p[tri[:, 0]], p[tri[:, 1]], p[tri[:, 2]]
        nrm = np.cross(b - a, c - a).sum(axis=0)
        length = np.linalg.norm(nrm)
        nrm = nrm / length if length > 1e-12 else np.array([0.0, 0.0, 1.0])
        positions.append(p)
        normals.append(np.repeat(nrm[None, :], len(p), axis=0))
        k = int(own[0])
        building.append(np.full(len(p), surfaces.building[k]))
        is_roof.append(np.full(len(p), bool(surfaces.is_roof[k])))
        indices.append((tri + offset).reshape(-1))
        offset += len(p)
    pos = np.concatenate(positions)
    return MeshArrays(pos, np.concatenate(normals).astype(np.float32), np.concatenate(building).astype(np.int32),
                      np.concatenate(is_roof), np.concatenate(indices).astype(np.uint32), pos)
