"""Point layers (trees, street furniture) → an instanced 3D Tiles 1.1 tileset.

Placement (exact to well under 5 cm): projected x/y → lon/lat; base = DEM orthometric height +
EGM96 geoid → ellipsoidal; → ECEF → the layer's ENU frame. Each instance is rotated into the
layer frame from its *own* local ENU (plumb at its point) and its heading is converted from grid
north of the run's working CRS (the delivery's own projected CRS, or a TM centred on the data:
:mod:`pipelines.run_frame`) to true north with the meridian convergence (pyproj ``get_factors``).

Level of detail (REPLACE refinement): a quadtree splits until a leaf holds ≤ ``max_per_leaf``
instances; leaves hold every instance. A parent of side L holds a thinned subset: in each
cell of L/``thin_cells`` only the instance of highest priority (tallest tree, most prominent
furniture) is kept. Its geometricError is *measured*: the largest, over omitted instances, of
min(the omitted object's size, its distance to the instance kept in its cell) — the most an
omitted object can change the picture — and never less than its children's errors.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyproj

from core.frames import EnuFrame, active_working_crs, crs_key, projected_to_lonlat
from pipelines.drape import DemGrid, layer_frame, to_enu
from pipelines.partitions import rekey
from tiles.gltf import FeatureTable, PropertyColumn
from tiles.instancing import InstanceGroup, encode_instanced_glb, local_to_frame_rotations
from tiles.models import TemplateMesh
from tiles.tileset import OrientedBox, QuadNode, Tile, Tileset, build_quadtree, enforce_monotonic_errors

log = logging.getLogger(__name__)


@lru_cache(maxsize=4)
def _proj(crs: str) -> pyproj.Proj:
    return pyproj.Proj(crs)


def meridian_convergence(lon: np.ndarray, lat: np.ndarray, crs: pyproj.CRS | str | None = None) -> np.ndarray:
    """Angle (deg) of grid north of ``crs`` (default: the working CRS) clockwise from true north at
    lon/lat (≈ +0.21° in Jiefang Street for EPSG:4548).

    A heading measured clockwise from grid north becomes ``heading + convergence`` from true north.
    """
    crs = crs if crs is not None else active_working_crs()
    f = _proj(crs_key(crs)).get_factors(np.asarray(lon, float), np.asarray(lat, float))
    return np.asarray(f.meridian_convergence, float)


@dataclass
class InstanceSet:
    """Validated instances of one layer (all arrays length N, working CRS, orthometric)."""

    xy: np.ndarray  # (N,2)
    base_h: np.ndarray  # (N,) orthometric ground height under each instance
    heading_grid: np.ndarray  # (N,) degrees clockwise from grid north
    template_keys: np.ndarray  # (N,) object: key into ``templates``
    templates: Mapping[str, TemplateMesh]
    scales: np.ndarray  # (N,3) template x, y, z scale
    priority: np.ndarray  # (N,) higher survives thinning
    size: np.ndarray  # (N,) visual size (m), for the error measure
    columns: dict[str, PropertyColumn]  # metadata, N rows each
    rows: np.ndarray  # (N,) source rows

    @property
    def count(self) -> int:
        return len(self.xy)


@dataclass
class InstancedBuild:
    """What was written."""

    tileset: Path
    tiles: int
    leaves: int
    depth: int
    instances: int
    instances_all_levels: int
    bytes: int
    root_error: float
    frame: EnuFrame
    seconds: float
    per_level: dict[int, int] = field(default_factory=dict)
    enu: np.ndarray | None = None  # (N,) exact ENU translations, for tests/diagnostics
    root_key: str = "0/0/0"
    root_content: np.ndarray | None = None  # instances drawn by the root tile (what a parent thins)
    root_height: int = 0  # levels from the root down to its deepest leaf


def thin(xy: np.ndarray, priority: np.ndarray, size: np.ndarray, bounds: tuple[float, float, float, float],
         cells: int) -> tuple[np.ndarray, float]:
    """Keep the highest-priority item per grid cell: (kept local indices, measured error in m)."""
    xmin, ymin, xmax, ymax = bounds
    cell = max(xmax - xmin, ymax - ymin) / cells
    ij = np.floor((xy - [xmin, ymin]) / cell).astype(np.int64).clip(0, cells - 1)
    key = ij[:, 0] * cells + ij[:, 1]
    order = np.lexsort((-priority, key))
    first = np.ones(len(order), bool)
    first[1:] = key[order][1:] != key[order][:-1]
    kept = order[first]
    # representative (kept) item of every item's cell
    rep = np.empty(len(xy), np.int64)
    group = np.cumsum(first) - 1
    rep[order] = kept[group]
    omitted = np.ones(len(xy), bool)
    omitted[kept] = False
    if not omitted.any():
        return np.sort(kept), 0.0
    d = np.hypot(*(xy[omitted] - xy[rep[omitted]]).T)
    return np.sort(kept), float(np.max(np.minimum(size[omitted], d)))


def drop_empty_strings(columns: dict[str, PropertyColumn]) -> dict[str, PropertyColumn]:
    """Leave out optional STRING columns with no value in this tile.

    An all-empty string column would need a zero-length bufferView, which glTF forbids; the
    property is simply absent from that tile's table (clients treat it as no data).
    """
    return {name: col for name, col in columns.items()
            if col.kind != "STRING" or col.required
            or any(v is not None and str(v) != "" for v in col.values)}


def aabb_box(points: np.ndarray, pad: float = 0.05) -> OrientedBox:
    """Axis-aligned (ENU) box around points, padded; cheap for many points."""
    p = np.asarray(points, float).reshape(-1, 3)
    lo, hi = p.min(axis=0) - pad, p.max(axis=0) + pad
    return OrientedBox((lo + hi) / 2, np.diag(np.maximum((hi - lo) / 2, 0.05)))


def _instance_corners(t: TemplateMesh, enu: np.ndarray, rot: np.ndarray, scales: np.ndarray) -> np.ndarray:
    lo, hi = t.positions.min(axis=0).astype(float), t.positions.max(axis=0).astype(float)
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    local = corners[None, :, :] * scales[:, None, :]
    return np.einsum("nij,nkj->nki", rot, local) + enu[:, None, :]


def _content(inst: InstanceSet, idx: np.ndarray, enu: np.ndarray, rot: np.ndarray, class_name: str,
             description: str) -> tuple[bytes, np.ndarray]:
    """glb bytes + (8·n,3) ENU corner points of the instances ``idx``."""
    origin = (enu[idx].min(axis=0) + enu[idx].max(axis=0)) / 2
    columns = {name: PropertyColumn(
        values=np.asarray(col.values, dtype=object if col.kind == "STRING" else None)[idx],
        kind=col.kind, no_data=col.no_data, description=col.description, required=col.required,
    ) for name, col in inst.columns.items()}
    table = FeatureTable(class_name, drop_empty_strings(columns), class_description=description)
    groups, corners = [], []
    keys = inst.template_keys[idx]
    for key in sorted(set(keys.tolist())):
        sel = np.flatnonzero(keys == key)
        rows = idx[sel]
        t = inst.templates[key]
        groups.append(InstanceGroup(t, enu[rows] - origin, rot[rows], inst.scales[rows], sel))
        c = _instance_corners(t, enu[rows], rot[rows], inst.scales[rows]).reshape(-1, 3)
        corners.append(np.vstack([c.min(axis=0), c.max(axis=0)]))
    return encode_instanced_glb(groups, table, origin), np.vstack(corners)


def build_instanced_tileset(
    inst: InstanceSet,
    out_dir: Path,
    dem: DemGrid,
    *,
    class_name: str,
    description: str = "",
    max_per_leaf: int = 2000,
    thin_cells: int = 32,
    frame: EnuFrame | None = None,
    progress: Callable[[int, int], None] | None = None,
    root_cell: tuple[int, int, int, tuple[float, float, float, float]] | None = None,
    single: bool = False,
) -> InstancedBuild:
    """Write ``out_dir/tileset.json`` and ``out_dir/tiles/{z}/{x}/{y}.glb``.

    ``root_cell`` (level, x, y, bounds): the quadtree is that cell of a partitioned run
    (:mod:`pipelines.layer_partitions`), keyed like the run's; ``single``: only that cell's tile,
    thinned like an inner tile (a parent above the partitions, from its children's content)."""
    t0 = time.perf_counter()
    if inst.count == 0:
        raise ValueError(f"{class_name}: no valid instances to write")
    out_dir = Path(out_dir)
    frame = frame or layer_frame(inst.xy, dem)
    stale = out_dir / "tiles"
    if stale.is_dir():  # a rebuild must not leave tiles of an older quadtree behind
        shutil.rmtree(stale)
    lon, lat = projected_to_lonlat(inst.xy[:, 0], inst.xy[:, 1], active_working_crs())
    enu = to_enu(frame, inst.xy[:, 0], inst.xy[:, 1], inst.base_h)
    heading_true = inst.heading_grid + meridian_convergence(lon, lat)
    rot = local_to_frame_rotations(frame.rotation, lon, lat, heading_true)

    if root_cell is None:
        root_node = build_quadtree(inst.xy, max_items=max_per_leaf)
    else:
        lv, cx, cy, cell_bounds = root_cell
        root_node = (QuadNode(0, 0, 0, tuple(cell_bounds), np.arange(inst.count)) if single  # type: ignore[arg-type]
                     else build_quadtree(inst.xy, max_items=max_per_leaf, bounds=tuple(cell_bounds),  # type: ignore[arg-type]
                                         max_depth=max(0, 12 - lv)))
        rekey(root_node, lv, cx, cy)
    nodes = list(root_node.walk())
    heights: dict[str, int] = {}
    root_content = None
    tiles: dict[str, Tile] = {}
    total_bytes = 0
    per_level: dict[int, int] = {}
    done = 0
    for node in root_node.post_order():
        idx = node.indices
        error = 0.0
        heights[node.key] = 0 if node.is_leaf else 1 + max(heights[c.key] for c in node.children)
        if not node.is_leaf or single:
            kept, error = thin(inst.xy[idx], inst.priority[idx], inst.size[idx], node.bounds, thin_cells)
            idx = idx[kept]
        if node is root_node:
            root_content = idx
        data, corners = _content(inst, idx, enu, rot, class_name, description)
        rel = f"tiles/{node.level}/{node.x}/{node.y}.glb"
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        total_bytes += len(data)
        per_level[node.level] = per_level.get(node.level, 0) + len(idx)
        children = [tiles[c.key] for c in node.children]
        child_pts = [c.box.corners() for c in children]
        box = aabb_box(np.vstack([corners, *child_pts]))
        tiles[node.key] = Tile(box=box, geometric_error=error, content_uri=rel, children=children,
                               refine="REPLACE", content_box=aabb_box(corners) if children else None)
        done += 1
        if progress:
            progress(done, len(nodes))
    root = tiles[root_node.key]
    root.transform = frame.tileset_transform()
    root_error = enforce_monotonic_errors(root)
    tileset = Tileset(root=root, geometric_error=max(2.0 * root_error, 1.0),
                      extras={"layer": class_name, "instances": inst.count})
    path = tileset.write(out_dir / "tileset.json")
    return InstancedBuild(
        tileset=path, tiles=len(nodes), leaves=sum(1 for n in nodes if n.is_leaf),
        depth=max(n.level for n in nodes), instances=inst.count,
        instances_all_levels=sum(per_level.values()), bytes=total_bytes, root_error=root_error,
        frame=frame, seconds=time.perf_counter() - t0, per_level=per_level, enu=enu,
        root_key=root_node.key, root_content=root_content, root_height=heights[root_node.key],
    )


def summary_dict(b: InstancedBuild) -> dict[str, Any]:
    return {"tiles": b.tiles, "leaves": b.leaves, "depth": b.depth, "instances": b.instances,
            "instances_all_levels": b.instances_all_levels, "bytes": b.bytes,
            "root_geometric_error_m": round(b.root_error, 3), "seconds": round(b.seconds, 2)}
