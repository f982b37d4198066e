"""Draped surfaces: polygons → grid-clipped triangles → DEM heights → tile-frame ENU meshes.

Surfaces (roads, green spaces, water) are triangulated per grid cell: every polygon is clipped
by a regular grid of ``cell`` metres (aligned on multiples of ``cell`` in the run's working CRS,
:func:`core.frames.active_working_crs`, chosen from the data by :mod:`pipelines.run_frame`) and each
piece is triangulated with GEOS's constrained Delaunay triangulation. No triangle is larger
than a cell, so the surface follows the terrain at the grid spacing; heights are the DEM's
(bilinear) plus a lift: the terrain mesh's tolerance (:data:`TERRAIN_CLEARANCE_M`, so the surface
is never below the terrain Cesium draws) and a small offset against z-fighting; or a flat level
(water).

Positions are exact: projected x/y + orthometric height → lon/lat → +geoid → ECEF → the layer's
ENU frame (:mod:`core.frames`), never a planar approximation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import shapely
from pyproj import CRS

from core.frames import (
    EnuFrame,
    active_working_crs,
    enu_to_gltf,
    projected_orthometric_to_ecef,
    projected_to_lonlat,
)
from pipelines.dem import DemSampler, open_dem
from pipelines.terrain import DEFAULT_MAX_ERROR
from tiles.gltf import MeshData

log = logging.getLogger(__name__)



# Cesium draws the terrain MESH, not the DEM: the quantized-mesh triangles depart from the DEM by
# up to the terrain pipeline's meshing tolerance (above it in valleys and hollows). A surface
# draped on the DEM clears what is drawn only if it is lifted by that tolerance plus its own
# anti-z-fighting offset (tests/test_fidelity.py compares with the decoded terrain tiles).
TERRAIN_CLEARANCE_M = DEFAULT_MAX_ERROR


# ------------------------------------------------------------------------------------ DEM
@dataclass
class DemGrid:
    """Orthometric ground heights: a DEM (:mod:`pipelines.dem`) or a constant stand-in."""

    sampler: DemSampler | None = None
    constant: float | None = None

    @classmethod
    def read(cls, path: Path | str) -> DemGrid:
        return cls(sampler=open_dem(path))

    @classmethod
    def window(cls, path: Path | str, bounds: tuple[float, float, float, float], crs: CRS | str,
               resolution: float | None = None) -> DemGrid:
        """Only the DEM under ``bounds`` (in ``crs``): what a spatial partition holds
        (:mod:`pipelines.layer_partitions`); the same heights there as :meth:`read`, or block means
        of ``resolution`` metres at most (a tile far above the leaves)."""
        return cls(sampler=DemSampler(path, window=(tuple(bounds), crs), resolution=resolution))  # type: ignore[arg-type]

    @classmethod
    def flat(cls, height: float = 0.0) -> DemGrid:
        """A constant-height stand-in when no DEM is given."""
        return cls(constant=float(height))

    @property
    def path(self) -> Path | None:
        return None if self.sampler is None else Path(self.sampler.path)


def sample_heights(dem: DemGrid, x_work: np.ndarray, y_work: np.ndarray, clamp: bool = False,
                   crs: CRS | None = None) -> np.ndarray:
    """Orthometric heights at points of ``crs`` (default: the working CRS), bilinear; NaN off the
    DEM unless ``clamp``, which moves points outside the raster onto its edge (for surfaces
    overhanging the DEM).
    """
    crs = crs or active_working_crs()
    x, y = np.asarray(x_work, float), np.asarray(y_work, float)
    if dem.constant is not None or dem.sampler is None:
        return np.full(x.shape, dem.constant or 0.0)
    s = dem.sampler
    if clamp:
        if s.crs.equals(crs, ignore_axis_order=True):
            minx, miny, maxx, maxy = s.bounds()
            r = 0.5 * s.resolution
            x, y = np.clip(x, minx + r, maxx - r), np.clip(y, miny + r, maxy - r)
        h = s.sample(x, y, crs)
        bad = ~np.isfinite(h)
        if bad.any():  # inside a nodata hole: the median ground keeps the surface plausible
            h[bad] = s.median_height()
        return h
    return s.sample(x, y, crs)


# ------------------------------------------------------------------------------------ frames
def layer_frame(xy_work: np.ndarray, dem: DemGrid) -> EnuFrame:
    """An ENU frame at the centre of the points' (working CRS) bounding box, at the ground's
    ellipsoidal height."""
    crs = active_working_crs()
    xy = np.asarray(xy_work, float).reshape(-1, 2)
    cx, cy = (xy.min(axis=0) + xy.max(axis=0)) / 2
    h = sample_heights(dem, np.array([cx]), np.array([cy]), clamp=True)
    h = np.nan_to_num(h, nan=0.0)
    lon, lat = projected_to_lonlat(np.array([cx]), np.array([cy]), crs)
    ecef = projected_orthometric_to_ecef(np.array([cx]), np.array([cy]), h, crs)[0]
    return EnuFrame(tuple(float(v) for v in ecef), float(lon[0]), float(lat[0]))


def to_enu(frame: EnuFrame, x_work: np.ndarray, y_work: np.ndarray, h_ortho: np.ndarray) -> np.ndarray:
    """(N,3) exact ENU of working-CRS points with orthometric heights (active geoid)."""
    ecef = projected_orthometric_to_ecef(np.asarray(x_work, float), np.asarray(y_work, float),
                                         np.asarray(h_ortho, float), active_working_crs())
    return frame.ecef_to_enu(ecef)


# ------------------------------------------------------------------------------------ meshing
def grid_pieces(polygons: np.ndarray, cell: float | None,
                bounds: tuple[float, float, float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Clip polygons by an aligned grid (and optional bounds): (pieces, owner index per piece)."""
    polygons = np.asarray(polygons, dtype=object)
    owner = np.arange(len(polygons))
    if bounds is not None:
        clip = shapely.box(*bounds)
        polygons = shapely.intersection(polygons, clip)
    if cell is None:
        pieces, owner = polygons, owner
    else:
        b = shapely.bounds(polygons)
        ok = np.isfinite(b).all(axis=1)
        if not ok.any():
            return np.zeros(0, dtype=object), np.zeros(0, np.int64)
        lo = np.floor(b[ok, :2].min(axis=0) / cell) * cell
        hi = np.ceil(b[ok, 2:].max(axis=0) / cell) * cell
        gx = np.arange(lo[0], hi[0], cell)
        gy = np.arange(lo[1], hi[1], cell)
        xx, yy = np.meshgrid(gx, gy, indexing="ij")
        cells = shapely.box(xx.ravel(), yy.ravel(), xx.ravel() + cell, yy.ravel() + cell)
        tree = shapely.STRtree(cells)
        poly_idx, cell_idx = tree.query(polygons, predicate="intersects")
        pieces = shapely.intersection(polygons[poly_idx], cells[cell_idx], grid_size=None)
        owner = owner[poly_idx]
    pieces = np.asarray(pieces, dtype=object)
    keep = ~shapely.is_empty(pieces) & (shapely.area(pieces) > 1e-6)
    return pieces[keep], owner[keep]


def segment_pieces(polygons: np.ndarray, max_segment: float,
                   bounds: tuple[float, float, float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Polygons (optionally clipped to bounds) with edges split to ≤ ``max_segment``: (pieces, owner).

    For narrow surfaces (roads): constrained Delaunay triangles then span the surface from edge
    to edge with vertices every ``max_segment`` along it, much cheaper than grid clipping.
    """
    polygons = np.asarray(polygons, dtype=object)
    owner = np.arange(len(polygons))
    if bounds is not None:
        polygons = shapely.intersection(polygons, shapely.box(*bounds))
    pieces = shapely.segmentize(polygons, max_segment)
    keep = ~shapely.is_empty(pieces) & (shapely.area(pieces) > 1e-6)
    return np.asarray(pieces, dtype=object)[keep], owner[keep]


def triangulate(pieces: np.ndarray, owner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Constrained Delaunay triangles of polygon pieces: ((T,3,2) xy CCW, (T,) owner)."""
    if len(pieces) == 0:
        return np.zeros((0, 3, 2)), np.zeros(0, np.int64)
    parts, piece_idx = shapely.get_parts(pieces, return_index=True)
    polys, sub_idx = shapely.get_parts(parts, return_index=True)  # collections → polygons
    owner_flat = np.asarray(owner)[piece_idx][sub_idx]
    is_poly = shapely.get_type_id(polys) == 3
    polys, owner_flat = polys[is_poly], owner_flat[is_poly]
    tris_gc = shapely.constrained_delaunay_triangles(polys)
    # coordinates straight from the collections (no Python object per triangle): 4 per triangle
    n_tri = shapely.get_num_geometries(tris_gc)
    coords = shapely.get_coordinates(tris_gc).reshape(-1, 4, 2)[:, :3].copy()
    tri_owner = np.repeat(owner_flat, n_tri)
    a, b, c = coords[:, 0], coords[:, 1], coords[:, 2]
    cross = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    flip = cross < 0
    coords[flip] = coords[flip][:, [0, 2, 1]]
    keep = np.abs(cross) > 1e-9
    return coords[keep], tri_owner[keep]


def weld(tri_xy: np.ndarray, tri_owner: np.ndarray, decimals: int = 3) -> tuple[np.ndarray, np.ndarray,
                                                                                 np.ndarray]:
    """Shared vertices per owner: (V,2) xy, (V,) owner, (T,3) indices."""
    n = len(tri_xy)
    flat = tri_xy.reshape(-1, 2)
    own = np.repeat(np.asarray(tri_owner, np.int64), 3)
    if n == 0:
        return np.zeros((0, 2)), np.zeros(0, np.int64), np.zeros((0, 3), np.int64)
    q = np.round((flat - flat.min(axis=0)) * 10**decimals).astype(np.int64)
    if q.max() < 2**22 and own.max() < 2**19:  # one int64 key: fast 1-D unique
        key = (q[:, 0] << 41) | (q[:, 1] << 19) | own
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        return flat[first], own[first], inverse.reshape(n, 3)
    key2 = np.column_stack([q, own])
    _, first, inverse = np.unique(key2, axis=0, return_index=True, return_inverse=True)
    return flat[first], own[first], inverse.reshape(n, 3)


def vertex_normals(pos: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """Area-weighted smooth vertex normals (same frame as ``pos``)."""
    a, b, c = pos[tris[:, 0]], pos[tris[:, 1]], pos[tris[:, 2]]
    face = np.cross(b - a, c - a)
    n = np.zeros_like(pos)
    for k in range(3):
        np.add.at(n, tris[:, k], face)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    return np.divide(n, length, out=np.tile([0.0, 0.0, 1.0], (len(n), 1)), where=length > 1e-12)


@dataclass
class DrapedMesh:
    """A surface mesh in the layer ENU frame with per-vertex owner (feature) indices."""

    enu: np.ndarray  # (V,3)
    normals: np.ndarray  # (V,3) ENU
    owner: np.ndarray  # (V,) feature index
    triangles: np.ndarray  # (T,3)
    drape_error: float  # max |DEM − surface| at triangle centroids and edge midpoints (m)
    area_m2: float  # projected area of the triangles


def drape(frame: EnuFrame, dem: DemGrid, tri_xy: np.ndarray, tri_owner: np.ndarray,
          lift: np.ndarray, flat_level: np.ndarray | None = None) -> DrapedMesh:
    """Heights for triangles: DEM + lift[owner], or flat_level[owner] + lift where that is finite."""
    xy, owner, tris = weld(tri_xy, tri_owner)
    ground = sample_heights(dem, xy[:, 0], xy[:, 1], clamp=True)
    ground = np.nan_to_num(ground, nan=0.0)
    h = ground + np.asarray(lift, float)[owner]
    flat = None
    if flat_level is not None:
        flat = np.asarray(flat_level, float)[owner]
        h = np.where(np.isfinite(flat), flat + np.asarray(lift, float)[owner], h)
    enu = to_enu(frame, xy[:, 0], xy[:, 1], h)
    # measured drape error: DEM vs the linear surface at centroids and edge midpoints
    err = 0.0
    draped_tri = np.ones(len(tris), bool)
    if flat is not None:
        draped_tri = ~np.isfinite(flat[tris[:, 0]])
    if draped_tri.any():
        t = tris[draped_tri]
        probes_xy, probes_h = [], []
        for wts in ((1 / 3, 1 / 3, 1 / 3), (0.5, 0.5, 0), (0, 0.5, 0.5), (0.5, 0, 0.5)):
            w = np.asarray(wts)
            probes_xy.append(np.einsum("k,tkd->td", w, xy[t]))
            probes_h.append(np.einsum("k,tk->t", w, ground[t]))
        pxy = np.vstack(probes_xy)
        dem_h = sample_heights(dem, pxy[:, 0], pxy[:, 1], clamp=True)
        diff = np.abs(np.concatenate(probes_h) - dem_h)
        err = float(np.nanmax(diff)) if np.isfinite(diff).any() else 0.0
    a, b, c = tri_xy[:, 0], tri_xy[:, 1], tri_xy[:, 2]
    area = 0.5 * np.abs((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]))
    return DrapedMesh(enu, vertex_normals(enu, tris), owner, tris, err, float(area.sum()))


def to_mesh_data(meshes: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]],
                 colors_rgba: np.ndarray) -> MeshData:
    """[(enu, normals_enu, owner, triangles, vertex colours or None)] → one glTF MeshData.

    ``owner`` values must already be feature ids of the tile's property table; vertices without
    their own colours take ``colors_rgba[owner]`` (uint8 RGBA).
    """
    parts = []
    for enu, nrm, owner, tris, vcol in meshes:
        if len(tris) == 0:
            continue
        parts.append(MeshData(
            positions=enu_to_gltf(enu).astype(np.float32),
            indices=tris.reshape(-1).astype(np.uint32),
            normals=enu_to_gltf(nrm).astype(np.float32),
            colors=np.asarray(colors_rgba, np.uint8)[owner] if vcol is None else np.asarray(vcol, np.uint8),
            feature_ids=np.asarray(owner, np.float32),
        ))
    return MeshData.concat(parts)


@lru_cache(maxsize=256)
def _color_u8(hex_value: str, alpha: int) -> tuple[int, int, int, int]:
    from tiles.models import hex_color

    c = hex_color(hex_value)
    c[3] = alpha / 255.0
    return tuple(int(v) for v in np.clip(np.rint(c * 255), 0, 255))


def color_u8(hex_value: str, alpha: int = 255) -> np.ndarray:
    """'#rrggbb' (sRGB) → linear uint8 RGBA (glTF vertex colours are linear)."""
    return np.array(_color_u8(hex_value, alpha), dtype=np.uint8)


__all__ = [
    "DemGrid", "DrapedMesh", "color_u8", "drape", "grid_pieces", "layer_frame", "sample_heights",
    "segment_pieces",
    "to_enu", "to_mesh_data", "triangulate", "vertex_normals", "weld",
]
