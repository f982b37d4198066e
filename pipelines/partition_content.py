"""What a partition of an instanced or draped layer writes, and what it passes up to its parents.

Used by :mod:`pipelines.layer_partitions` (roads, trees, furniture). A partition encodes its own
quadtree below its cell with the layer's usual builder (:func:`pipelines.instanced.build_instanced_tileset`,
:func:`pipelines.surfaces.build_surface_tileset`, keyed like the whole run) and keeps, in
``top.parquet``, only what a tile above it can draw:

* **instances** (trees, furniture): the root tile's thinned instances (the highest priority of
  each of its 32 × 32 thinning cells). A parent's thinning cells are 2 × 2 of its children's, so
  thinning the union of the children's tops keeps what thinning all their instances would keep.
* **surfaces** (roads): the features a tile one level higher still draws (``lod_rank`` above the
  partition root's height), simplified with that level's tolerance, plus every feature with an
  extra mesh (bridges, drawn at every level); ``rest_max`` is the largest feature left out, which
  a parent adds to its geometricError.

Columns travel with their kinds (``top.json``), so a parent's property tables are the same as a
child's for the same features.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shapely

from pipelines.instanced import InstanceSet, build_instanced_tileset
from pipelines.surfaces import SurfaceSet, build_surface_tileset
from tiles.gltf import PropertyColumn

TOP = "top.parquet"
TOP_META = "top.json"


# ------------------------------------------------------------------------------------ columns
def _take(col: PropertyColumn, idx: np.ndarray) -> PropertyColumn:
    values = np.asarray(col.values, dtype=object if col.kind == "STRING" else None)[idx]
    return PropertyColumn(values, col.kind, no_data=col.no_data, description=col.description, required=col.required)


def _col_frame(columns: dict[str, PropertyColumn], idx: np.ndarray) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    data, meta = {}, []
    for name, col in columns.items():
        values = np.asarray(col.values, dtype=object if col.kind == "STRING" else None)[idx]
        data[f"c:{name}"] = [None if v is None else str(v) for v in values] if col.kind == "STRING" else values
        meta.append({"name": name, "kind": col.kind, "no_data": col.no_data, "description": col.description,
                     "required": col.required})
    return data, meta


def _columns(df: pd.DataFrame, meta: list[dict[str, Any]]) -> dict[str, PropertyColumn]:
    out = {}
    for m in meta:
        values = df[f"c:{m['name']}"]
        arr = (np.array([None if v is None or (isinstance(v, float) and v != v) else v for v in values], dtype=object)
               if m["kind"] == "STRING" else values.to_numpy())
        out[m["name"]] = PropertyColumn(arr, m["kind"], no_data=m["no_data"], description=m["description"],
                                        required=m["required"])
    return out


def _write(folder: Path, data: dict[str, Any], meta: dict[str, Any]) -> None:
    pd.DataFrame(data).to_parquet(folder / TOP, index=False)
    (folder / TOP_META).write_text(json.dumps(meta), encoding="utf-8")


def _read(dirs: list[Path]) -> tuple[pd.DataFrame, dict[str, Any]]:
    frames = [pd.read_parquet(d / TOP) for d in dirs if (d / TOP).exists()]
    metas = [json.loads((d / TOP_META).read_text(encoding="utf-8")) for d in dirs if (d / TOP_META).exists()]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if len(df):
        df = df.sort_values("row", kind="stable").reset_index(drop=True)  # the source order, as in one piece
    return df, (metas[0] if metas else {})


# ------------------------------------------------------------------------------------ instances
def subset_instances(inst: InstanceSet, idx: np.ndarray) -> InstanceSet:
    return InstanceSet(xy=inst.xy[idx], base_h=inst.base_h[idx], heading_grid=inst.heading_grid[idx],
                       template_keys=inst.template_keys[idx], templates=inst.templates, scales=inst.scales[idx],
                       priority=inst.priority[idx], size=inst.size[idx],
                       columns={k: _take(c, idx) for k, c in inst.columns.items()}, rows=inst.rows[idx])


def save_instance_top(folder: Path, inst: InstanceSet, idx: np.ndarray) -> None:
    data, meta = _col_frame(inst.columns, idx)
    data.update({"row": inst.rows[idx], "x": inst.xy[idx, 0], "y": inst.xy[idx, 1], "base_h": inst.base_h[idx],
                 "heading": inst.heading_grid[idx], "key": inst.template_keys[idx].astype(str),
                 "sx": inst.scales[idx, 0], "sy": inst.scales[idx, 1], "sz": inst.scales[idx, 2],
                 "priority": inst.priority[idx], "size": inst.size[idx]})
    _write(folder, data, {"columns": meta})


def load_instance_tops(dirs: list[Path], template: Any) -> InstanceSet | None:
    df, meta = _read(dirs)
    if not len(df):
        return None
    keys = df["key"].to_numpy(dtype=object)
    return InstanceSet(
        xy=df[["x", "y"]].to_numpy(float), base_h=df["base_h"].to_numpy(float),
        heading_grid=df["heading"].to_numpy(float), template_keys=keys,
        templates={k: template(k) for k in sorted(set(keys.tolist()))},
        scales=df[["sx", "sy", "sz"]].to_numpy(float), priority=df["priority"].to_numpy(float),
        size=df["size"].to_numpy(float), columns=_columns(df, meta["columns"]), rows=df["row"].to_numpy(np.int64))


def encode_instances(worker: Any, options: Any, inst: InstanceSet, folder: Path, frame: Any,
                     cell: tuple[int, int, int, tuple[float, float, float, float]], single: bool = False
                     ) -> dict[str, Any] | None:
    from pipelines.drape import DemGrid

    if inst.count == 0:
        return None
    build = build_instanced_tileset(inst, folder, DemGrid.flat(), frame=frame, root_cell=cell, single=single,
                                    max_per_leaf=options.max_per_leaf, **worker.build_kw)
    save_instance_top(folder, inst, build.root_content)
    return {"root": build.root_key, "depth_below": build.root_height, "rest_max": 0.0,
            "tiles": build.tiles, "bytes": build.bytes, "instances_all_levels": build.instances_all_levels}


# ------------------------------------------------------------------------------------ surfaces
def subset_surfaces(s: SurfaceSet, idx: np.ndarray, polygons: np.ndarray | None = None) -> SurfaceSet:
    idx = np.asarray(idx, np.int64)
    where = {int(old): new for new, old in enumerate(idx)}
    return SurfaceSet(
        polygons=(np.asarray(s.polygons, dtype=object)[idx] if polygons is None else polygons),
        lift=s.lift[idx], flat_level=s.flat_level[idx], colors=s.colors[idx], lod_rank=s.lod_rank[idx],
        size=s.size[idx], columns={k: _take(c, idx) for k, c in s.columns.items()}, rows=s.rows[idx],
        extra_xy={where[k]: v for k, v in s.extra_xy.items() if k in where},
        extra_columns={k: np.asarray(v, dtype=object)[idx] for k, v in s.extra_columns.items()})


def clip_surfaces(s: SurfaceSet, bounds: tuple[float, float, float, float]) -> SurfaceSet | None:
    """The features' ground inside the cell, and the extra meshes centred in it (half-open), so
    that every piece of a feature straddling cells is drawn by exactly one partition."""
    box = shapely.box(*bounds)
    polys = np.asarray(s.polygons, dtype=object)
    has = np.array([p is not None and not shapely.is_empty(p) for p in polys], bool)
    clipped = np.full(len(polys), None, dtype=object)
    if has.any():
        clipped[has] = shapely.intersection(polys[has], box)
        for i in np.flatnonzero(shapely.get_type_id(clipped) == 7):  # lines/points on the cell edge dropped
            parts = [p for p in shapely.get_parts(clipped[i]) if p.geom_type in ("Polygon", "MultiPolygon")]
            clipped[i] = shapely.union_all(parts) if parts else None
        areal = np.array([p is not None and not shapely.is_empty(p) and shapely.area(p) > 0 for p in clipped], bool)
        clipped[~areal] = None
    x0, y0, x1, y1 = bounds
    extra = {i for i, (x, y) in s.extra_xy.items() if x0 <= x < x1 and y0 <= y < y1}
    keep = np.array([clipped[i] is not None or i in extra for i in range(len(polys))], bool)
    if not keep.any():
        return None
    idx = np.flatnonzero(keep)
    out = subset_surfaces(s, idx, clipped[idx])
    out.extra_xy = {new: s.extra_xy[old] for new, old in enumerate(idx) if int(old) in extra}
    return out


def save_surface_top(folder: Path, s: SurfaceSet, height: int, leaf_cell: float, max_cell: float) -> float:
    """The features a tile above this one draws; returns the largest size left out."""
    keep = (s.lod_rank > height) | np.isin(np.arange(s.count), list(s.extra_xy))
    idx = np.flatnonzero(keep)
    tol = min(leaf_cell * 2.0 ** (height + 1), max_cell) / 16.0
    polys = np.asarray(s.polygons, dtype=object)[idx]
    wkb = [None if p is None or shapely.is_empty(p)
           else shapely.to_wkb(shapely.simplify(p, tol, preserve_topology=True)) for p in polys]
    data, meta = _col_frame(s.columns, idx)
    exy = np.array([s.extra_xy.get(int(i), (np.nan, np.nan)) for i in idx], float).reshape(-1, 2)
    data.update({"row": s.rows[idx], "wkb": wkb, "lift": s.lift[idx], "flat_level": s.flat_level[idx],
                 "r": s.colors[idx, 0], "g": s.colors[idx, 1], "b": s.colors[idx, 2], "a": s.colors[idx, 3],
                 "lod_rank": s.lod_rank[idx], "size": s.size[idx], "ex": exy[:, 0], "ey": exy[:, 1]})
    for k, v in s.extra_columns.items():
        data[f"x:{k}"] = list(np.asarray(v, dtype=object)[idx])
    _write(folder, data, {"columns": meta, "extra": sorted(s.extra_columns)})
    rest = ~keep & np.array([p is not None for p in s.polygons], bool)
    return float(s.size[rest].max()) if rest.any() else 0.0


def load_surface_tops(dirs: list[Path]) -> SurfaceSet | None:
    df, meta = _read(dirs)
    if not len(df):
        return None
    polys = np.array([None if w is None else shapely.from_wkb(w) for w in df["wkb"]], dtype=object)
    exy = df[["ex", "ey"]].to_numpy(float)
    if df["row"].duplicated().any():  # a feature crossing cells: its pieces become one feature again
        first = []
        for pos in df.groupby("row", sort=True).indices.values():
            parts = [polys[i] for i in pos if polys[i] is not None]
            polys[pos[0]] = shapely.union_all(parts) if len(parts) > 1 else (parts[0] if parts else None)
            with_extra = [i for i in pos if np.isfinite(exy[i, 0])]
            if with_extra:
                exy[pos[0]] = exy[with_extra[0]]
            first.append(pos[0])
        keep = np.sort(np.asarray(first, np.int64))
        df, polys, exy = df.iloc[keep].reset_index(drop=True), polys[keep], exy[keep]
    return SurfaceSet(
        polygons=polys, lift=df["lift"].to_numpy(float), flat_level=df["flat_level"].to_numpy(float),
        colors=df[["r", "g", "b", "a"]].to_numpy(np.uint8), lod_rank=df["lod_rank"].to_numpy(),
        size=df["size"].to_numpy(float), columns=_columns(df, meta["columns"]), rows=df["row"].to_numpy(np.int64),
        extra_xy={i: exy[i] for i in np.flatnonzero(np.isfinite(exy[:, 0])).tolist()},
        extra_columns={k: df[f"x:{k}"].to_numpy(dtype=object) for k in meta.get("extra", [])})


def encode_surfaces(worker: Any, options: Any, s: SurfaceSet, folder: Path, frame: Any,
                    cell: tuple[int, int, int, tuple[float, float, float, float]], dem: Any,
                    single_height: int | None = None) -> dict[str, Any] | None:
    kw = dict(worker.build_kw)
    leaf_cell, max_cell = kw.get("leaf_cell", 8.0), kw.get("max_cell", 64.0)
    if worker.extras is not None:
        worker.extras(s, dem)
    build = build_surface_tileset(s, folder, dem, frame=frame, root_cell=cell, single_height=single_height, **kw)
    if build is None:
        return None
    height = build.root_height
    rest_max = save_surface_top(folder, s, height, leaf_cell, max_cell)
    return {"root": build.root_key, "depth_below": height, "rest_max": rest_max, "tiles": build.tiles,
            "bytes": build.bytes, "triangles": build.triangles_leaves}
