"""Vectorised building geometry: footprints → LOD0 slabs, LOD1 prisms, LOD2 roofs → triangle meshes.

Everything works on whole batches (numpy + shapely 2 array functions); the only per-item
Python loop is ``mapbox_earcut`` for non-convex roof facets (convex ones are fanned in numpy).

Model. A building is a set of planar *roof facets* (polygons in a metric CRS with a plane
``z = a·(x-ox) + b·(y-oy) + c``, heights orthometric). Walls hang from every facet edge that
lies on the footprint boundary down to the building base. So:

- LOD0: the footprint at the base (no walls);
- LOD1: one flat facet per footprint part at ``base + height``;
- LOD2: ``flat`` as LOD1; ``gable``: the footprint split along the ridge (long axis of the
  minimum rotated rectangle) into two sloped halves; ``hip``: split into two sloped sides and two
  sloped ends by the ridge and the 45° hip lines. The ridge is at ``base + height``; the eave at
  ``base + height - roof_height`` with ``roof_height = min(tan(pitch)·width/2, max_ratio·height)``.

Meshes are flat-shaded (vertices not shared between facets/walls), counter-clockwise seen from
outside, in the caller's ENU frame (``to_enu(x, y, z_ortho) → (N,3)``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import mapbox_earcut
import numpy as np
import shapely

ROOF_FLAT, ROOF_GABLE, ROOF_HIP = 0, 1, 2
ROOF_CODES = {"flat": ROOF_FLAT, "gable": ROOF_GABLE, "hip": ROOF_HIP}
ROOF_NAMES = {v: k for k, v in ROOF_CODES.items()}

ToEnu = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass
class Facets:
    """Planar roof facets of a batch of buildings (metric CRS, orthometric heights)."""

    polygons: np.ndarray  # (F,) shapely Polygon
    building: np.ndarray  # (F,) int: index of the building in the batch
    plane: np.ndarray  # (F,3): a, b, c
    origin: np.ndarray  # (F,2): ox, oy
    all_walls: np.ndarray  # (F,) bool: every edge is on the footprint boundary (no crease edges)

    def __len__(self) -> int:
        return len(self.polygons)

    def select(self, buildings: np.ndarray, renumber: np.ndarray | None = None) -> Facets:
        """Facets of the given building indices; ``renumber[old] = new`` building index if given."""
        wanted = np.zeros(int(max(self.building.max(initial=-1), np.max(buildings, initial=-1))) + 1, bool)
        wanted[buildings] = True
        mask = wanted[self.building]
        b = self.building[mask]
        return Facets(self.polygons[mask], renumber[b] if renumber is not None else b,
                      self.plane[mask], self.origin[mask], self.all_walls[mask])

    def z_at(self, facet: np.ndarray, xy: np.ndarray) -> np.ndarray:
        p = self.plane[facet]
        d = xy - self.origin[facet]
        return p[:, 0] * d[:, 0] + p[:, 1] * d[:, 1] + p[:, 2]


@dataclass
class MeshArrays:
    """A triangle mesh of many buildings in ENU: per-vertex building index and roof flag."""

    positions: np.ndarray  # (V,3) float64 ENU
    normals: np.ndarray  # (V,3) float32 ENU unit
    building: np.ndarray  # (V,) int32 building index in the batch
    is_roof: np.ndarray  # (V,) bool
    indices: np.ndarray  # (3T,) uint32
    outline: np.ndarray | None = None  # (K,3) the distinct corner points (enough for bounding volumes)

    @property
    def n_vertices(self) -> int:
        return len(self.positions)


# ------------------------------------------------------------------------------------ helpers
def _group_starts(groups: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """(start, count) of each group in an array sorted by group."""
    counts = np.bincount(groups, minlength=n_groups)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return starts, counts


def _arange_in_groups(counts: np.ndarray) -> np.ndarray:
    """[0..c0-1, 0..c1-1, ...] for group sizes ``counts``."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return np.arange(total) - np.repeat(starts, counts)


def group_min(values: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    out = np.full(n_groups, np.inf)
    np.minimum.at(out, groups, values)
    return out


def explode_polygons(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Polygon parts of (multi)polygons/collections and the index of their source geometry."""
    parts, idx = shapely.get_parts(geoms, return_index=True)
    while True:
        types = shapely.get_type_id(parts)
        multi = np.isin(types, (4, 5, 6, 7))  # multi*/collection
        if not multi.any():
            break
        sub, sub_idx = shapely.get_parts(parts[multi], return_index=True)
        parts = np.concatenate([parts[~multi], sub])
        idx = np.concatenate([idx[~multi], idx[multi][sub_idx]])
    keep = (shapely.get_type_id(parts) == 3) & (shapely.area(parts) > 1e-6)
    order = np.argsort(idx[keep], kind="stable")
    return parts[keep][order], idx[keep][order]


# ------------------------------------------------------------------------------------ roofs
@dataclass
class RoofFrame:
    """Per building: centre of the minimum rotated rectangle, long axis u, length L ≥ width w."""

    centre: np.ndarray  # (B,2)
    u: np.ndarray  # (B,2) unit, along the ridge
    v: np.ndarray  # (B,2) unit, across the ridge (u rotated +90°)
    length: np.ndarray  # (B,)
    width: np.ndarray  # (B,)


def roof_frames(footprints: np.ndarray) -> RoofFrame:
    env = shapely.oriented_envelope(footprints)
    n = len(footprints)
    rect = np.zeros((n, 4, 2))
    ok = shapely.get_num_coordinates(env) == 5
    if ok.any():
        rect[ok] = shapely.get_coordinates(env[ok]).reshape(-1, 5, 2)[:, :4]
    if (~ok).any():  # degenerate: axis-aligned bounds
        b = shapely.bounds(footprints[~ok])
        rect[~ok] = np.stack([b[:, [0, 1]], b[:, [2, 1]], b[:, [2, 3]], b[:, [0, 3]]], axis=1)
    e1, e2 = rect[:, 1] - rect[:, 0], rect[:, 3] - rect[:, 0]
    l1, l2 = np.linalg.norm(e1, axis=1), np.linalg.norm(e2, axis=1)
    first_long = l1 >= l2
    long_vec = np.where(first_long[:, None], e1, e2)
    long_len = np.maximum(np.where(first_long, l1, l2), 1e-9)
    u = long_vec / long_len[:, None]
    v = np.column_stack([-u[:, 1], u[:, 0]])
    centre = rect[:, 0] + 0.5 * (e1 + e2)
    return RoofFrame(centre, u, v, np.where(first_long, l1, l2), np.where(first_long, l2, l1))


def roof_heights(width: np.ndarray, height: np.ndarray, kind: np.ndarray,
                 pitch_deg: float = 30.0, max_ratio: float = 0.35) -> np.ndarray:
    """Ridge-above-eave height per building (0 for flat)."""
    rh = np.minimum(np.tan(np.radians(pitch_deg)) * 0.5 * width, max_ratio * height)
    return np.where(kind == ROOF_FLAT, 0.0, rh)


def lod1_facets(footprints: np.ndarray, top_z: np.ndarray) -> Facets:
    """One flat facet per polygon part at ``top_z`` (LOD1; LOD0 with ``top_z = base``)."""
    parts, idx = explode_polygons(footprints)
    n = len(parts)
    plane = np.zeros((n, 3))
    plane[:, 2] = np.asarray(top_z, float)[idx]
    return Facets(shapely.orient_polygons(parts), idx, plane, np.zeros((n, 2)), np.ones(n, bool))


def _templates(frame: RoofFrame, b: np.ndarray, kind: int, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Facet template polygons (T,k,2) in xy and their facet code (0 side+,1 side-,2 end+,3 end-)."""
    half_l, half_w = 0.5 * frame.length[b], 0.5 * frame.width[b]
    t = half_w + margin
    ext = half_l + margin
    a = np.maximum(half_l - half_w, 0.0)
    uv: list[np.ndarray] = []
    codes: list[int] = []
    if kind == ROOF_GABLE:
        uv.append(np.stack([np.stack([-ext, np.zeros_like(t)], 1), np.stack([ext, np.zeros_like(t)], 1),
                            np.stack([ext, t], 1), np.stack([-ext, t], 1)], axis=1))
        codes.append(0)
        uv.append(np.stack([np.stack([-ext, -t], 1), np.stack([ext, -t], 1),
                            np.stack([ext, np.zeros_like(t)], 1), np.stack([-ext, np.zeros_like(t)], 1)],
                           axis=1))
        codes.append(1)
    else:
        z = np.zeros_like(t)
        # 45° hip lines from the ridge ends (±a, 0) through the corners, extended by the margin
        uv.append(np.stack([np.stack([-a, z], 1), np.stack([a, z], 1),
                            np.stack([a + t, t], 1), np.stack([-a - t, t], 1)], axis=1))
        codes.append(0)
        uv.append(np.stack([np.stack([-a - t, -t], 1), np.stack([a + t, -t], 1),
                            np.stack([a, z], 1), np.stack([-a, z], 1)], axis=1))
        codes.append(1)
        uv.append(np.stack([np.stack([a, z], 1), np.stack([a + t, -t], 1), np.stack([a + t, t], 1),
                            np.stack([a, z], 1)], axis=1))
        codes.append(2)
        uv.append(np.stack([np.stack([-a, z], 1), np.stack([-a - t, t], 1), np.stack([-a - t, -t], 1),
                            np.stack([-a, z], 1)], axis=1))
        codes.append(3)
    out = []
    for q in uv:  # (B,4,2) in (u,v) → xy
        xy = (frame.centre[b][:, None, :] + q[..., :1] * frame.u[b][:, None, :]
              + q[..., 1:] * frame.v[b][:, None, :])
        out.append(xy)
    polys = [shapely.polygons(np.concatenate([xy, xy[:, :1]], axis=1)) for xy in out]
    return np.stack(polys, axis=1), np.array(codes)


def lod2_facets(
    footprints: np.ndarray,
    base_z: np.ndarray,
    height: np.ndarray,
    kind: np.ndarray,
    *,
    pitch_deg: float = 30.0,
    max_ratio: float = 0.35,
) -> tuple[Facets, np.ndarray]:
    """LOD2 facets and, per building, the measured max drop of the LOD2 roof below the LOD1 top."""
    n = len(footprints)
    base_z = np.asarray(base_z, float)
    top = base_z + np.asarray(height, float)
    kind = np.asarray(kind, np.int64)
    frame = roof_frames(footprints)
    rh = roof_heights(frame.width, np.asarray(height, float), kind, pitch_deg, max_ratio)
    kind = np.where(rh > 0.05, kind, ROOF_FLAT)
    flat = np.flatnonzero(kind == ROOF_FLAT)
    parts = [lod1_facets(footprints[flat], top[flat])]
    parts[0].building = flat[parts[0].building]
    for k in (ROOF_GABLE, ROOF_HIP):
        b = np.flatnonzero(kind == k)
        if not len(b):
            continue
        templates, codes = _templates(frame, b, k, margin=1.0 + 0.01 * float(frame.length[b].max()))
        n_t = templates.shape[1]
        pieces = shapely.intersection(np.repeat(footprints[b], n_t), templates.reshape(-1))
        polys, src = explode_polygons(pieces)
        bb = b[src // n_t]
        code = codes[src % n_t]
        s = rh[bb] / np.maximum(0.5 * frame.width[bb], 1e-9)
        eave = top[bb] - rh[bb]
        axis = np.where((code < 2)[:, None], frame.v[bb], frame.u[bb])
        sign = np.where(code % 2 == 0, -1.0, 1.0)
        half = np.where(code < 2, 0.5 * frame.width[bb], 0.5 * frame.length[bb])
        plane = np.column_stack([sign * s * axis[:, 0], sign * s * axis[:, 1], eave + s * half])
        parts.append(Facets(shapely.orient_polygons(polys), bb, plane, frame.centre[bb],
                            np.zeros(len(polys), bool)))
    facets = Facets(
        np.concatenate([p.polygons for p in parts]), np.concatenate([p.building for p in parts]),
        np.concatenate([p.plane for p in parts]), np.concatenate([p.origin for p in parts]),
        np.concatenate([p.all_walls for p in parts]),
    )
    order = np.argsort(facets.building, kind="stable")
    facets = Facets(facets.polygons[order], facets.building[order], facets.plane[order],
                    facets.origin[order], facets.all_walls[order])
    coords, fidx = shapely.get_coordinates(facets.polygons, return_index=True)
    z = facets.z_at(fidx, coords)
    drop = np.zeros(n)
    if len(z):
        lowest = group_min(z, facets.building[fidx], n)
        drop = np.where(np.isfinite(lowest), np.maximum(top - lowest, 0.0), 0.0)
    return facets, drop


# ------------------------------------------------------------------------------------ meshing
def _triangulate(coords: np.ndarray, ring_facet: np.ndarray, ring_len: np.ndarray,
                 n_facets: int) -> np.ndarray:
    """Triangles (T,3) over the roof vertices (ring coords without closing points, facet order)."""
    k = ring_len - 1  # vertices per ring
    rings_per_facet = np.bincount(ring_facet, minlength=n_facets)
    vert_start = np.concatenate([[0], np.cumsum(k)[:-1]])
    # convexity of single-ring facets (exterior is CCW)
    single = rings_per_facet[ring_facet] == 1
    ring_of_vert = np.repeat(np.arange(len(k)), k)
    pos = _arange_in_groups(k)
    prev_i = vert_start[ring_of_vert] + (pos - 1) % k[ring_of_vert]
    next_i = vert_start[ring_of_vert] + (pos + 1) % k[ring_of_vert]
    d1 = coords - coords[prev_i]
    d2 = coords[next_i] - coords
    cross = d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]
    scale = np.maximum(np.abs(d1).sum(1) * np.abs(d2).sum(1), 1e-12)
    reflex = np.zeros(len(k), bool)
    if len(cross):
        np.logical_or.at(reflex, ring_of_vert, cross < -1e-9 * scale)
    fan = single & ~reflex & (k >= 3)
    tris: list[np.ndarray] = []
    if fan.any():
        fk = k[fan] - 2
        t = _arange_in_groups(fk)
        s = np.repeat(vert_start[fan], fk)
        tris.append(np.column_stack([s, s + t + 1, s + t + 2]))
    slow_facets = np.unique(ring_facet[~fan & (k >= 3)])
    if len(slow_facets):
        ring_start_of_facet = np.concatenate([[0], np.cumsum(rings_per_facet)[:-1]])
        for f in slow_facets.tolist():
            r0 = ring_start_of_facet[f]
            r1 = r0 + rings_per_facet[f]
            v0, v1 = vert_start[r0], vert_start[r1 - 1] + k[r1 - 1]
            pts = coords[v0:v1]
            ends = np.cumsum(k[r0:r1]).astype(np.uint32)
            local = mapbox_earcut.triangulate_float64(pts - pts[0], ends).astype(np.int64)
            if len(local):
                tris.append(local.reshape(-1, 3) + v0)
    return np.concatenate(tris) if tris else np.zeros((0, 3), np.int64)


def facets_to_mesh(
    facets: Facets,
    footprints: np.ndarray,
    base_z: np.ndarray,
    to_enu: ToEnu,
    *,
    walls: bool = True,
) -> MeshArrays:
    """Roofs (triangulated facets) + walls from facet edges on the footprint boundary down to the base."""
    if len(facets) == 0:
        return MeshArrays(np.zeros((0, 3)), np.zeros((0, 3), np.float32), np.zeros(0, np.int32),
                          np.zeros(0, bool), np.zeros(0, np.uint32))
    rings, ring_facet = shapely.get_rings(facets.polygons, return_index=True)
    coords, coord_ring = shapely.get_coordinates(rings, return_index=True)
    n = len(coords)
    _, ring_len = _group_starts(coord_ring, len(rings))
    is_last = np.zeros(n, bool)
    is_last[np.cumsum(ring_len) - 1] = True
    coord_facet = ring_facet[coord_ring]
    bld = facets.building[coord_facet]
    z_top = facets.z_at(coord_facet, coords)
    z_bot = np.asarray(base_z, float)[bld]

    need_bottom = walls
    xs = np.concatenate([coords[:, 0], coords[:, 0]]) if need_bottom else coords[:, 0]
    ys = np.concatenate([coords[:, 1], coords[:, 1]]) if need_bottom else coords[:, 1]
    zs = np.concatenate([z_top, z_bot]) if need_bottom else z_top
    enu = to_enu(xs, ys, zs)
    top = enu[:n]

    # ---- roofs
    roof_sel = ~is_last
    roof_pos = top[roof_sel]
    roof_bld = bld[roof_sel]
    tri = _triangulate(coords[roof_sel], ring_facet, ring_len, len(facets))
    if len(tri):
        a, b, c = roof_pos[tri[:, 0]], roof_pos[tri[:, 1]], roof_pos[tri[:, 2]]
        nrm = np.cross(b - a, c - a)
        flip = nrm[:, 2] < 0  # ENU up; roofs are never steeper than ~60°
        tri[flip] = tri[flip][:, [0, 2, 1]]
        nrm[flip] *= -1
        roof_n = np.column_stack([np.bincount(tri.ravel(), weights=np.repeat(nrm[:, i], 3),
                                              minlength=len(roof_pos)) for i in range(3)])
    else:
        roof_n = np.zeros_like(roof_pos)
    roof_n = _normalize(roof_n, fallback=(0.0, 0.0, 1.0))
    positions = [roof_pos]
    normals = [roof_n]
    building = [roof_bld]
    is_roof = [np.ones(len(roof_pos), bool)]
    indices = [tri.reshape(-1)]
    offset = len(roof_pos)

    # ---- walls
    if walls:
        bot = enu[n:]
        edge = np.flatnonzero(~is_last)
        nxt = edge + 1
        crease_candidates = ~facets.all_walls[coord_facet[edge]]
        if crease_candidates.any():
            e = edge[crease_candidates]
            mid = 0.5 * (coords[e] + coords[e + 1])
            boundary = shapely.boundary(footprints[bld[e]])
            on_boundary = shapely.distance(shapely.points(mid), boundary) < 1e-3
            keep = np.ones(len(edge), bool)
            keep[np.flatnonzero(crease_candidates)[~on_boundary]] = False
            edge, nxt = edge[keep], nxt[keep]
        m = len(edge)
        quad = np.stack([bot[edge], bot[nxt], top[nxt], top[edge]], axis=1)  # (m,4,3)
        up = _normalize(top[edge] - bot[edge], fallback=(0.0, 0.0, 1.0))
        wall_n = _normalize(np.cross(bot[nxt] - bot[edge], up), fallback=(1.0, 0.0, 0.0))
        positions.append(quad.reshape(-1, 3))
        normals.append(np.repeat(wall_n, 4, axis=0))
        building.append(np.repeat(bld[edge], 4))
        is_roof.append(np.zeros(4 * m, bool))
        base = offset + 4 * np.arange(m)
        indices.append((base[:, None] + np.array([0, 1, 2, 0, 2, 3])).reshape(-1))
        # drop degenerate wall triangles (zero-height wall ends of gables are fine: they vanish)
    return MeshArrays(
        np.concatenate(positions), np.concatenate(normals).astype(np.float32),
        np.concatenate(building).astype(np.int32), np.concatenate(is_roof),
        np.concatenate(indices).astype(np.uint32), enu,
    )


def _normalize(v: np.ndarray, fallback: tuple[float, float, float]) -> np.ndarray:
    length = np.linalg.norm(v, axis=1, keepdims=True)
    out = np.divide(v, length, out=np.zeros_like(v, dtype=float), where=length > 1e-12)
    out[length[:, 0] <= 1e-12] = fallback
    return out


def footprint_deviation(simplified: np.ndarray, original: np.ndarray) -> np.ndarray:
    """Hausdorff distance (m) between simplified and original footprints, per building."""
    return np.asarray(shapely.hausdorff_distance(simplified, original), float)
