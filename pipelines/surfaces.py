"""Draped surface layers (roads, green spaces, water) → a mesh 3D Tiles 1.1 tileset.

Leaves: the whole layer is cut into grid pieces of ``leaf_cell`` metres (:func:`grid_pieces`,
for wide areas) or its polygon edges are split every ``leaf_cell`` metres
(:func:`segment_pieces`, ``grid=False``, for narrow surfaces such as roads); a quadtree over
the pieces splits until a leaf holds ≤ ``max_pieces``; each leaf triangulates and drapes its
pieces. Extra meshes (bridge decks) go to the leaf holding their centre.

Parents (REPLACE refinement) are rebuilt from the polygons clipped to their square with a
coarser grid (``leaf_cell``·2^d, at most ``max_cell``) after dropping features whose
``lod_rank`` is below d (d = height of the node above its deepest leaf). A parent's
geometricError is measured: max(drape error of the coarse mesh against the DEM, the size of the
largest dropped feature, simplification tolerance), and never below its children's.

Every glb carries ``EXT_mesh_features`` (``_FEATURE_ID_0`` per vertex) and an
``EXT_structural_metadata`` property table of the features present in that tile.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from core.frames import EnuFrame
from pipelines.drape import (
    DemGrid,
    drape,
    grid_pieces,
    layer_frame,
    segment_pieces,
    to_mesh_data,
    triangulate,
)
from pipelines.instanced import aabb_box, drop_empty_strings
from pipelines.partitions import rekey
from tiles.gltf import FeatureTable, Material, PropertyColumn, encode_mesh_glb
from tiles.tileset import QuadNode, Tile, Tileset, build_quadtree, enforce_monotonic_errors

log = logging.getLogger(__name__)

# (enu (V,3), normals (V,3), triangles (T,3), vertex colours (V,4) uint8 or None), layer ENU frame
ExtraMesh = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]


@dataclass
class SurfaceSet:
    """Features of a surface layer (arrays of length M)."""

    polygons: np.ndarray  # (M,) working-CRS polygons to drape (None/empty for mesh-only features)
    lift: np.ndarray  # (M,) metres above the DEM (or above flat_level)
    flat_level: np.ndarray  # (M,) orthometric level for flat features (water), NaN = drape
    colors: np.ndarray  # (M,4) uint8 linear RGBA
    lod_rank: np.ndarray  # (M,) int: kept in tiles up to this height above the leaves
    size: np.ndarray  # (M,) visual size (m) when dropped
    columns: dict[str, PropertyColumn]
    rows: np.ndarray  # (M,) source rows
    extra_xy: dict[int, np.ndarray] = field(default_factory=dict)  # feature → (2,) centre, working CRS
    extra_builder: Callable[[EnuFrame], dict[int, ExtraMesh]] | None = None
    # per feature, what rebuilds its extra mesh elsewhere (a partition's parent): layer-defined columns
    extra_columns: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.polygons)


@dataclass
class SurfaceBuild:
    tileset: Path
    tiles: int
    leaves: int
    depth: int
    triangles_leaves: int
    triangles_all_levels: int
    bytes: int
    root_error: float
    drape_error_leaves: float
    area_m2_leaves: float
    frame: EnuFrame
    seconds: float
    leaf_meshes: list[dict[str, Any]] = field(default_factory=list)  # for tests: per leaf tri_xy/owner
    root_key: str = "0/0/0"
    root_height: int = 0  # levels from the root down to its deepest leaf

    def summary(self) -> dict[str, Any]:
        return {"tiles": self.tiles, "leaves": self.leaves, "depth": self.depth,
                "triangles": self.triangles_leaves, "triangles_all_levels": self.triangles_all_levels,
                "bytes": self.bytes, "root_geometric_error_m": round(self.root_error, 3),
                "drape_error_max_m": round(self.drape_error_leaves, 3),
                "surface_area_m2": round(self.area_m2_leaves, 1), "seconds": round(self.seconds, 2)}


def subtract_earlier(polygons: np.ndarray) -> np.ndarray:
    """Make polygons disjoint: each loses what earlier ones (lower index) cover.

    The union of the result equals the union of the input and the pieces do not overlap, so a
    draped surface never has two coplanar triangles on the same ground (no z-fighting).
    """
    polys = np.asarray(polygons, dtype=object)
    if len(polys) == 0:
        return polys.copy()
    tree = shapely.STRtree(polys)
    a, b = tree.query(polys, predicate="intersects")
    earlier = b < a
    a, b = a[earlier], b[earlier]
    out = polys.copy()
    if len(a):
        order = np.argsort(a, kind="stable")
        a, b = a[order], b[order]
        starts = np.flatnonzero(np.r_[True, a[1:] != a[:-1]])
        ends = np.r_[starts[1:], len(a)]
        targets = a[starts]
        cutters = np.array([shapely.union_all(polys[b[s:e]]) for s, e in zip(starts, ends, strict=True)],
                           dtype=object)
        out[targets] = shapely.difference(polys[targets], cutters)
    # keep only the areal parts (differences can leave lines/points on shared edges)
    for i in np.flatnonzero(shapely.get_type_id(out) == 7):
        parts = [p for p in shapely.get_parts(out[i]) if p.geom_type in ("Polygon", "MultiPolygon")]
        out[i] = shapely.union_all(parts) if parts else shapely.Polygon()
    return out


def _heights_above_leaves(root: QuadNode) -> dict[str, int]:
    out: dict[str, int] = {}
    for n in root.post_order():
        out[n.key] = 0 if n.is_leaf else 1 + max(out[c.key] for c in n.children)
    return out


def _table(s: SurfaceSet, features: np.ndarray, class_name: str, description: str) -> FeatureTable:
    cols = {name: PropertyColumn(
        values=(np.asarray(c.values)[features] if isinstance(c.values, np.ndarray)
                else [c.values[i] for i in features]),
        kind=c.kind, no_data=c.no_data, description=c.description, required=c.required)
        for name, c in s.columns.items()}
    return FeatureTable(class_name, drop_empty_strings(cols), class_description=description)


def build_surface_tileset(
    s: SurfaceSet,
    out_dir: Path,
    dem: DemGrid,
    *,
    class_name: str,
    description: str = "",
    leaf_cell: float = 8.0,
    max_cell: float = 64.0,
    max_pieces: int = 6000,
    grid: bool = True,
    frame: EnuFrame | None = None,
    material: Material | None = None,
    progress: Callable[[int, int], None] | None = None,
    keep_leaf_geometry: bool = False,
    root_cell: tuple[int, int, int, tuple[float, float, float, float]] | None = None,
    single_height: int | None = None,
) -> SurfaceBuild | None:
    """Write ``out_dir/tileset.json`` + ``out_dir/tiles/{z}/{x}/{y}.glb`` for a surface layer.

    ``root_cell`` (level, x, y, bounds): the quadtree is that cell of a partitioned run
    (:mod:`pipelines.layer_partitions`; every piece lies inside it), keyed like the run's.
    ``single_height``: only that cell's tile, built as an inner tile that high above its leaves
    (a parent above the partitions, from its children's content); None when it draws nothing."""
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    stale = out_dir / "tiles"
    if stale.is_dir():  # a rebuild must not leave tiles of an older quadtree behind
        shutil.rmtree(stale)
    polys = np.asarray(s.polygons, dtype=object)
    has_poly = np.array([p is not None and not shapely.is_empty(p) for p in polys])
    polys_ok = np.where(has_poly, polys, shapely.Point(0, 0))
    is_flat = np.isfinite(np.asarray(s.flat_level, float))

    def cut(polygons: np.ndarray, ids: np.ndarray, cell: float,
            bounds: tuple[float, float, float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Pieces of features ``ids``: flat ones (water) need no grid, only split edges."""
        out_p, out_o = [], []
        for sel, gridded in ((~is_flat[ids], grid), (is_flat[ids], False)):
            if sel.any():
                fn = grid_pieces if gridded else segment_pieces
                p, o = fn(polygons[sel], cell if gridded else 4 * cell, bounds=bounds)
                out_p.append(p)
                out_o.append(ids[sel][o])
        if not out_p:
            return np.zeros(0, dtype=object), np.zeros(0, np.int64)
        return np.concatenate(out_p), np.concatenate(out_o)

    single = single_height is not None
    if single:  # an inner tile only: no leaf pieces
        pieces, owner = np.zeros(0, dtype=object), np.zeros(0, np.int64)
    else:
        pieces, owner = cut(polys_ok[has_poly], np.flatnonzero(has_poly), leaf_cell)
    extra_ids = np.array(sorted(s.extra_xy), dtype=np.int64)
    extra_pts = np.array([s.extra_xy[i] for i in extra_ids]).reshape(-1, 2)
    piece_pts = shapely.get_coordinates(shapely.point_on_surface(pieces)).reshape(-1, 2)
    all_pts = np.vstack([piece_pts, extra_pts])
    if len(all_pts) == 0 and not single:
        raise ValueError(f"{class_name}: nothing to write")
    frame = frame or layer_frame(all_pts, dem)
    extras = s.extra_builder(frame) if s.extra_builder is not None else {}
    if root_cell is None:
        root_node = build_quadtree(all_pts, max_items=max_pieces)
    else:
        lv, cx, cy, cell_bounds = root_cell
        root_node = (QuadNode(0, 0, 0, tuple(cell_bounds), np.arange(len(all_pts))) if single  # type: ignore[arg-type]
                     else build_quadtree(all_pts, max_items=max_pieces, bounds=tuple(cell_bounds),  # type: ignore[arg-type]
                                         max_depth=max(0, 12 - lv)))
        rekey(root_node, lv, cx, cy)
    height = _heights_above_leaves(root_node)
    if single:
        height[root_node.key] = int(single_height)  # type: ignore[arg-type]
    nodes = list(root_node.walk())
    n_pieces = len(pieces)
    tiles: dict[str, Tile] = {}
    leaf_meshes: list[dict[str, Any]] = []
    total_bytes = tri_leaves = tri_all = 0
    drape_err_leaves = area_leaves = 0.0
    mat = material or Material(roughness=0.95)
    poly_tree = shapely.STRtree(polys_ok)
    done = 0
    for node in root_node.post_order():
        d = height[node.key]
        error = 0.0
        if node.is_leaf and not single:
            idx = node.indices
            sel_pieces = idx[idx < n_pieces]
            sel_extra = extra_ids[idx[idx >= n_pieces] - n_pieces]
            tri_xy, tri_owner = triangulate(pieces[sel_pieces], owner[sel_pieces])
        else:
            cell = min(leaf_cell * 2.0**d, max_cell)
            xmin, ymin, xmax, ymax = node.bounds
            sub = np.asarray(poly_tree.query(shapely.box(*node.bounds)), np.int64)
            sub = sub[has_poly[sub]]
            keep = sub[s.lod_rank[sub] >= d]
            dropped = sub[s.lod_rank[sub] < d]
            tol = cell / 16.0
            simplified = shapely.simplify(polys_ok[keep], tol, preserve_topology=True)
            p2, o2 = cut(simplified, keep, cell, bounds=node.bounds)
            tri_xy, tri_owner = triangulate(p2, o2)
            error = max(float(s.size[dropped].max()) if len(dropped) else 0.0, tol)
            inside = (extra_pts[:, 0] >= xmin) & (extra_pts[:, 0] <= xmax) \
                & (extra_pts[:, 1] >= ymin) & (extra_pts[:, 1] <= ymax)
            sel_extra = extra_ids[inside]
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]] = []
        n_tri = 0
        if len(tri_xy):
            dm = drape(frame, dem, tri_xy, tri_owner, s.lift, s.flat_level)
            parts.append((dm.enu, dm.normals, dm.owner, dm.triangles, None))
            n_tri += len(dm.triangles)
            if node.is_leaf and not single:
                drape_err_leaves = max(drape_err_leaves, dm.drape_error)
                area_leaves += dm.area_m2
            else:
                error = max(error, dm.drape_error)
            if keep_leaf_geometry and node.is_leaf:
                leaf_meshes.append({"key": node.key, "tri_xy": tri_xy, "owner": tri_owner, "enu": dm.enu,
                                    "triangles": dm.triangles, "vertex_owner": dm.owner})
        for k in sel_extra.tolist():
            enu, nrm, tris, vcol = extras[k]
            parts.append((enu, nrm, np.full(len(enu), k, np.int64), tris, vcol))
            n_tri += len(tris)
        children = [tiles[c.key] for c in node.children]
        rel = None
        content_pts = None
        if parts:
            features = np.unique(np.concatenate([p[2] for p in parts]))
            remap = np.full(s.count, -1, np.int64)
            remap[features] = np.arange(len(features))
            mesh = to_mesh_data([(e, n, remap[o], t, c) for e, n, o, t, c in parts], s.colors[features])
            glb = encode_mesh_glb(mesh, _table(s, features, class_name, description), material=mat)
            rel = f"tiles/{node.level}/{node.x}/{node.y}.glb"
            path = out_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(glb)
            total_bytes += len(glb)
            tri_all += n_tri
            if node.is_leaf and not single:
                tri_leaves += n_tri
            content_pts = np.vstack([p[0] for p in parts])
        pts = [c.box.corners() for c in children]
        if content_pts is not None:
            pts.append(content_pts)
        if not pts:
            done += 1
            continue
        box = aabb_box(np.vstack(pts))
        tiles[node.key] = Tile(box=box, geometric_error=error, content_uri=rel, children=children,
                               refine="REPLACE")
        done += 1
        if progress:
            progress(done, len(nodes))
    # drop children that ended empty (no content, no children)
    for n in nodes:
        if n.key in tiles:
            tiles[n.key].children = [tiles[c.key] for c in n.children if c.key in tiles]
    if root_node.key not in tiles:  # a single inner tile with nothing to draw
        return None
    root = tiles[root_node.key]
    root.transform = frame.tileset_transform()
    root_error = enforce_monotonic_errors(root)
    tileset = Tileset(root=root, geometric_error=max(2.0 * root_error, 1.0),
                      extras={"layer": class_name, "features": s.count})
    path = tileset.write(out_dir / "tileset.json")
    return SurfaceBuild(
        tileset=path, tiles=len(tiles), leaves=sum(1 for n in nodes if n.is_leaf and n.key in tiles),
        depth=max(n.level for n in nodes), triangles_leaves=tri_leaves, triangles_all_levels=tri_all,
        bytes=total_bytes, root_error=root_error, drape_error_leaves=drape_err_leaves,
        area_m2_leaves=area_leaves, frame=frame, seconds=time.perf_counter() - t0, leaf_meshes=leaf_meshes,
        root_key=root_node.key, root_height=height[root_node.key],
    )
