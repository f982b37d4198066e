"""Levels of detail of textured meshes: quadric simplification (fast-simplification), texture
coordinates re-projected from the original surface, texture downsampling, and the MEASURED
geometric error (an upper bound of the two-way distance between the original and the simplified
surfaces, from points covering both) that becomes a tile's ``geometricError``.

Meshes here are plain arrays in one metric frame (local ENU metres): ``positions`` (n, 3),
``faces`` (m, 3), optional per-vertex ``uv`` (n, 2) / ``colors`` (n, 4 uint8), an ``image``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from PIL import Image

MIN_TEXTURE_PX = 16
WELD_M = 0.001  # vertices closer than this are one before simplification
#: points per surface (and direction) measuring a simplified level's error, and their finest spacing
ERROR_SAMPLES = 4_000
MIN_SAMPLE_SPACING_M = 0.25


@dataclass
class LodMesh:
    positions: np.ndarray
    faces: np.ndarray
    uv: np.ndarray | None = None
    image: np.ndarray | None = None
    colors: np.ndarray | None = None
    color: tuple[float, float, float, float] = (0.8, 0.8, 0.8, 1.0)
    name: str = ""

    @property
    def n_triangles(self) -> int:
        return int(len(self.faces))


def _trimesh(positions: np.ndarray, faces: np.ndarray) -> Any:
    import trimesh

    return trimesh.Trimesh(vertices=positions, faces=faces, process=False, validate=False)


def closest_on(positions: np.ndarray, faces: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                                         np.ndarray]:
    """(closest points, distances, triangle ids) of ``points`` on the mesh (trimesh + rtree)."""
    import trimesh

    mesh = _trimesh(positions, faces)
    closest, dist, tri = trimesh.proximity.closest_point(mesh, np.asarray(points, float))
    return closest, dist, tri


def _barycentric(positions, faces, tri, points) -> np.ndarray:
    import trimesh

    return trimesh.triangles.points_to_barycentric(positions[faces[tri]], points)


def simplify(mesh: LodMesh, ratio: float, *, min_triangles: int = 8) -> LodMesh:
    """Quadric edge-collapse simplification to ``ratio`` of the triangles; per-vertex UVs and
    colours are re-interpolated at each new vertex's closest point on the original surface."""
    import fast_simplification

    n = mesh.n_triangles
    target = max(min_triangles, int(round(n * ratio)))
    if n <= target or n < 2 * min_triangles:
        return mesh
    pts, faces = fast_simplification.simplify(np.asarray(mesh.positions, np.float64),
                                              np.asarray(mesh.faces, np.int64), target_count=target)
    pts = np.asarray(pts, float)
    faces = np.asarray(faces, np.int64)
    if len(faces) == 0:
        return mesh
    out = replace(mesh, positions=pts, faces=faces)
    if mesh.uv is not None or mesh.colors is not None:
        closest, _d, tri = closest_on(mesh.positions, mesh.faces, pts)
        bary = _barycentric(mesh.positions, mesh.faces, tri, closest)
        corner = mesh.faces[tri]
        if mesh.uv is not None:
            out.uv = np.einsum("nk,nkd->nd", bary, mesh.uv[corner])
        if mesh.colors is not None:
            col = np.einsum("nk,nkd->nd", bary, mesh.colors[corner].astype(float))
            out.colors = np.clip(np.round(col), 0, 255).astype(np.uint8)
    return out


def simplify_together(meshes: list[LodMesh], ratio: float, *, min_triangles: int = 8) -> list[LodMesh]:
    """Simplify several parts as ONE mesh (so the quadric cost decides where triangles go: flat,
    over-tessellated ground goes first, walls and roof edges last), then split the result back
    into its parts (each new face goes to the part of the nearest original face); attributes
    re-interpolated per part on its original surface."""
    import fast_simplification

    meshes = [m for m in meshes if m.n_triangles]
    if not meshes:
        return []
    pos, fac = merge(meshes)
    part_of = np.repeat(np.arange(len(meshes)), [m.n_triangles for m in meshes])
    target = max(min_triangles, int(round(len(fac) * ratio)))
    if len(fac) <= target:
        return meshes
    # weld coincident vertices (parts and UV seams split them) so walls, roofs and ground form
    # one surface whose quadrics see each other: an open wall alone collapses at zero cost
    key = np.round(pos / WELD_M).astype(np.int64)
    _u, first, weld = np.unique(key, axis=0, return_index=True, return_inverse=True)
    wfac = weld.ravel()[fac]
    keep = (wfac[:, 0] != wfac[:, 1]) & (wfac[:, 1] != wfac[:, 2]) & (wfac[:, 0] != wfac[:, 2])
    pts, faces_all = fast_simplification.simplify(pos[first].astype(np.float64), wfac[keep].astype(np.int64),
                                                  target_count=target)
    pts = np.asarray(pts, float)
    faces_all = np.asarray(faces_all, np.int64)
    # each new face belongs to the part of the original face nearest its centroid (parts are
    # separate components, so an edge collapse never mixes them)
    _c, _d, tri = closest_on(pos, fac, pts[faces_all].mean(axis=1))
    face_part = part_of[tri]
    out = []
    for k, m in enumerate(meshes):
        faces = faces_all[face_part == k]
        if len(faces) == 0:
            continue
        used, remap = np.unique(faces, return_inverse=True)
        s = replace(m, positions=pts[used], faces=remap.reshape(-1, 3))
        if m.uv is not None or m.colors is not None:
            closest, _d, tri = closest_on(m.positions, m.faces, s.positions)
            bary = _barycentric(m.positions, m.faces, tri, closest)
            corner = m.faces[tri]
            if m.uv is not None:
                s.uv = np.einsum("nk,nkd->nd", bary, m.uv[corner])
            if m.colors is not None:
                col = np.einsum("nk,nkd->nd", bary, m.colors[corner].astype(float))
                s.colors = np.clip(np.round(col), 0, 255).astype(np.uint8)
        out.append(s)
    return out


def downsample_image(image: np.ndarray | None, factor: int) -> np.ndarray | None:
    """Texture shrunk by ``factor`` (box filter), never below MIN_TEXTURE_PX."""
    if image is None or factor <= 1:
        return image
    h, w = image.shape[:2]
    nh, nw = max(MIN_TEXTURE_PX, h // factor), max(MIN_TEXTURE_PX, w // factor)
    if (nh, nw) == (h, w):
        return image
    return np.asarray(Image.fromarray(image).resize((nw, nh), Image.Resampling.BOX))


def merge(meshes: list[LodMesh]) -> tuple[np.ndarray, np.ndarray]:
    """All meshes' geometry as one (positions, faces) pair."""
    pos, fac, off = [], [], 0
    for m in meshes:
        pos.append(m.positions)
        fac.append(m.faces + off)
        off += len(m.positions)
    return np.vstack(pos), np.vstack(fac)


def _longest_edge_split(tri: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split triangles (k, 3, 3) at the midpoint of their longest edge: (apex, p, q, mid) with
    corners (apex, p, q) and the new point ``mid`` on edge p-q; children (apex, p, mid), (apex, mid, q)."""
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    edges = np.stack([np.linalg.norm(b - c, axis=1), np.linalg.norm(c - a, axis=1),
                      np.linalg.norm(a - b, axis=1)], axis=1)  # edge k is opposite corner k
    k = edges.argmax(axis=1)
    rows = np.arange(len(tri))
    return k, rows, edges, 0.5 * (tri[rows, (k + 1) % 3] + tri[rows, (k + 2) % 3])


def _longest(tri: np.ndarray) -> np.ndarray:
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    return np.maximum.reduce([np.linalg.norm(b - c, axis=1), np.linalg.norm(c - a, axis=1),
                              np.linalg.norm(a - b, axis=1)])


def surface_distance_bound(src_positions: np.ndarray, src_faces: np.ndarray, dst_positions: np.ndarray,
                           dst_faces: np.ndarray, *, start_points: int = ERROR_SAMPLES,
                           max_points: int = 8 * ERROR_SAMPLES, tolerance: float = 0.02) -> tuple[float, float]:
    """(lower, upper) bounds of the largest distance from a point of the source surface to the
    destination surface (the directed Hausdorff distance).

    Every point of a triangle whose longest edge is L lies within L / sqrt(3) of a corner, and the
    distance to a surface changes no faster than the point moves, so a triangle's points are at
    most (its corners' largest distance + L / sqrt(3)) away. The source triangles are split
    (longest-edge bisection) to about ``start_points`` corners; then only the triangles whose
    bound exceeds the largest distance seen by more than ``tolerance`` (relative, at least 1 cm)
    are split again, until none is left or ``max_points`` distances were computed."""
    tri = np.asarray(src_positions, float)[np.asarray(src_faces, np.int64).reshape(-1, 3)]
    if not len(tri):
        return 0.0, 0.0
    area = 0.5 * float(np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1).sum())
    spacing = max(MIN_SAMPLE_SPACING_M, float(np.sqrt(4.0 * area / max(1, start_points))))
    for _ in range(64):  # coarse cover: no edge longer than ``spacing``
        long = _longest(tri) > spacing
        if not long.any():
            break
        k, rows, _e, mid = _longest_edge_split(tri[long])
        t = tri[long]
        apex, p, q = t[rows, k], t[rows, (k + 1) % 3], t[rows, (k + 2) % 3]
        tri = np.concatenate([tri[~long], np.stack([apex, p, mid], 1), np.stack([apex, mid, q], 1)])

    evaluated = 0

    def dist(points: np.ndarray) -> np.ndarray:
        nonlocal evaluated
        key = np.round(points / 1e-4).astype(np.int64)
        _u, first, inv = np.unique(key, axis=0, return_index=True, return_inverse=True)
        _c, d, _t = closest_on(dst_positions, dst_faces, points[first])
        evaluated += len(first)
        return np.asarray(d, float)[inv.ravel()]

    d = dist(tri.reshape(-1, 3)).reshape(-1, 3)
    lower, done_upper = float(d.max()), 0.0
    while True:
        upper = d.max(axis=1) + _longest(tri) / np.sqrt(3.0)
        lower = max(lower, float(d.max()))
        open_ = upper > lower + max(0.01, tolerance * lower)
        done_upper = max(done_upper, float(upper[~open_].max()) if (~open_).any() else 0.0)
        tri, d = tri[open_], d[open_]
        if not len(tri) or evaluated >= max_points:
            return lower, max(done_upper, float(upper[open_].max()) if len(tri) else 0.0, lower)
        k, rows, _e, mid = _longest_edge_split(tri)
        dm = dist(mid)
        apex, p, q = tri[rows, k], tri[rows, (k + 1) % 3], tri[rows, (k + 2) % 3]
        da, dp, dq = d[rows, k], d[rows, (k + 1) % 3], d[rows, (k + 2) % 3]
        tri = np.concatenate([np.stack([apex, p, mid], 1), np.stack([apex, mid, q], 1)])
        d = np.concatenate([np.stack([da, dp, dm], 1), np.stack([da, dm, dq], 1)])


def measured_error(original_points: np.ndarray, simplified: list[LodMesh],
                   original: list[LodMesh] | None = None) -> float:
    """An upper bound (m) of the distance between the original and the simplified surfaces.

    Without ``original``: the max distance from ``original_points`` to the simplified surface.
    With it: the two-way (Hausdorff) distance between the surfaces, bounded from above by
    :func:`surface_distance_bound` both ways (``original_points`` are then its vertices anyway). Vertices
    alone miss the face interiors: a wall whose bottom corners collapsed into one point on the
    ground keeps every vertex on the original surface while half the wall is gone."""
    pos, fac = merge(simplified)
    if original:  # the bounds cover the vertices (triangle corners) too
        opos, ofac = merge(original)
        return max(surface_distance_bound(opos, ofac, pos, fac)[1], surface_distance_bound(pos, fac, opos, ofac)[1])
    _c, d, _t = closest_on(pos, fac, np.asarray(original_points, float))
    return float(np.max(d)) if len(d) else 0.0
