"""Roads, trees and furniture at city scale: the partition tasks shared by the three layers.

Same machinery as the buildings (:mod:`pipelines.partitions`: quadtree cells of one level, the
engine in-process or on Dask, a resumable work folder); each layer plugs in a
:class:`LayerWorker` (its field specs, the function that checks and prepares the features it
read, its builder's arguments). A **partition task** (:func:`run_layer_partition`):

1. reads the cell's bounding box (grown by the worker's ``margin_m``) from the source through the
   spatial index, keeps the features it **owns**: those whose envelope centre lies in the cell
   (half-open cells: each feature belongs to exactly one partition, whatever it straddles);
2. layers with a cross-feature rule (roads: a road wholly under higher-ranked roads is rejected
   ``covered``; overlaps are subtracted in rank order) read again the owned features' envelopes
   grown by the margin (the widest road), so every road that can cut an owned road, or a road
   drawn in the cell, is there;
3. applies the layer's rules to everything read (the rows come in source order, so "the first
   one is kept" rules decide as in one piece), reports and counts only its owned rows, and
   draws: instances it owns; for surfaces, every feature's ground *inside the cell* (a road
   crossing cells is drawn piece by piece by the cells it crosses, once each);
4. encodes its quadtree below the cell (:mod:`pipelines.partition_content`) and writes the small
   content its parents draw.

Duplicate ids across partitions are resolved by the client as for buildings (first row kept,
``duplicate_id`` for the others); a task that read such a row, owned or as context, runs again
with it rejected. Rows no cell owns (no geometry, bad coordinates) are read by feature id and
accounted by one more task. **Parent tasks** (:func:`run_layer_parent`) draw a cell above the
partitions from its children's ``top.parquet`` only.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from pyproj import CRS, Transformer

from core.delivery.checks import find_boundary, load_boundary
from core.delivery.mapping import FieldMapping, load_mapping
from core.delivery.read import read_layer
from core.frames import (
    EnuFrame,
    active_geoid,
    using_geoid,
    using_working_crs,
)
from pipelines import partition_content as pc
from pipelines import partitions as pt
from pipelines.publish import digest

ENGINE_OPTIONS = ("dask", "dry_run")  # how a run executes, not what it writes
WORKERS = {"roads": "pipelines.roads", "trees": "pipelines.vegetation", "furniture": "pipelines.furniture"}
VERSION = "layer-partitions-1"


@dataclass(frozen=True)
class LayerWorker:
    """What a layer plugs into the shared tasks (its module's ``PARTITION_WORKER``).

    ``prepare(src, dem, boundary, after_clean, owned)`` runs the layer's rules on a
    :class:`core.delivery.read.SourceLayer` and returns ``(set or None, report, written local
    rows, stats of the owned rows)``; ``after_clean(report, geoms)`` must be called right after
    the geometry rules (the client's duplicate ids). ``extras(set, dem)`` rebuilds extra meshes
    (bridges) from ``set.extra_columns``; ``finish(report, stats)`` adds the notes and outputs
    computed from the summed ``stats`` of every partition."""

    name: str
    kind: str  # "instances" | "surfaces"
    specs: tuple[Any, ...]
    prepare: Callable[..., tuple[Any, Any, np.ndarray, dict[str, Any]]]
    build_kw: dict[str, Any] = field(default_factory=dict)
    margin_m: float = 0.0
    template: Callable[[str], Any] | None = None
    extras: Callable[[Any, Any], None] | None = None
    finish: Callable[[Any, dict[str, Any]], None] | None = None


def worker(name: str) -> LayerWorker:
    return importlib.import_module(WORKERS[name]).PARTITION_WORKER  # type: ignore[no-any-return]


@dataclass(frozen=True)
class LayerPlan:
    """What every task needs besides the options (small and picklable)."""

    layer: str  # WORKERS key
    src: str
    src_layer: str | None
    layer_crs: str  # WKT
    working_crs: str  # WKT
    square: tuple[float, float, float, float]
    extent: tuple[float, float, float, float]
    level: int
    frame: tuple[float, float, float]  # lon, lat, ellipsoidal h of the ENU origin
    fid_base: int
    n_input: int
    settings: str
    work: str
    geoid: str | None


def _mapping(options: Any) -> FieldMapping:
    m = options.mapping
    return load_mapping(m) if isinstance(m, (str, Path)) else (m or FieldMapping())


def options_key(options: Any) -> str:
    return repr(sorted((k, repr(v)) for k, v in vars(options).items() if k not in ENGINE_OPTIONS))


def plan_layer(name: str, src: Path | str, options: Any) -> LayerPlan | None:
    """The partition plan, or None when the one-piece build applies (few features, a format
    read whole, ``partition_level`` 0, an unreadable file: the one-piece path reports it)."""
    try:
        mapping = _mapping(options)
    except Exception:  # noqa: BLE001 - unreadable: the one-piece path reports it properly
        return None
    with using_geoid(options.geoid):
        probe = pt.probe_source(src, options, mapping)
        heights = repr(active_geoid().metadata())
    if probe is None:
        return None
    path = Path(src)
    stat = path.stat()
    settings = digest([VERSION, name, str(path.absolute()), str(stat.st_size), str(stat.st_mtime_ns),
                       options_key(options), str(probe.level), heights])
    return LayerPlan(name, str(path.absolute()), probe.layer, probe.layer_crs.to_wkt(), probe.working.to_wkt(),
                     probe.square, probe.extent, probe.level, probe.frame, probe.fid_base, probe.n, settings, "",
                     options.geoid)


# ------------------------------------------------------------------------------------ helpers
def _read(plan: LayerPlan, options: Any, w: LayerWorker, **kwargs: Any) -> Any:
    src = read_layer(plan.src, w.specs, layer_name=w.name, mapping=_mapping(options), encoding=options.encoding,
                     src_crs=options.src_crs, layer=plan.src_layer, **kwargs)
    order = np.argsort(np.asarray(src.fids, np.int64), kind="stable")  # source order: "first kept" rules
    if np.any(order != np.arange(len(order))):
        src = pt.subset_layer(src, order)
    return src


def _envelopes(plan: LayerPlan, src: Any) -> np.ndarray:
    """(n, 4) envelopes in the working CRS (NaN without a usable geometry)."""
    geoms = np.asarray(src.gdf.geometry.values, dtype=object)
    env = np.full((len(geoms), 4), np.nan)
    ok = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    if ok.any():
        b = shapely.bounds(geoms[ok])
        t = Transformer.from_crs(CRS.from_wkt(plan.layer_crs), CRS.from_wkt(plan.working_crs), always_xy=True)
        xs, ys = t.transform(np.concatenate([b[:, 0], b[:, 2], b[:, 0], b[:, 2]]),
                             np.concatenate([b[:, 1], b[:, 3], b[:, 3], b[:, 1]]))
        xs, ys = np.asarray(xs).reshape(4, -1), np.asarray(ys).reshape(4, -1)
        env[ok] = np.column_stack([xs.min(0), ys.min(0), xs.max(0), ys.max(0)])
    return env


def _owned(plan: LayerPlan, env: np.ndarray, level: int, cx: int, cy: int) -> np.ndarray:
    ok = np.isfinite(env).all(axis=1)
    owned = np.zeros(len(env), bool)
    if ok.any():
        centre = np.column_stack([0.5 * (env[ok, 0] + env[ok, 2]), 0.5 * (env[ok, 1] + env[ok, 3])])
        ix, iy = pt.cell_index(centre, plan.square, level)
        owned[ok] = (ix == cx) & (iy == cy)
    return owned


def _grow(b: tuple[float, ...], d: float) -> tuple[float, float, float, float]:
    return (b[0] - d, b[1] - d, b[2] + d, b[3] + d)


def _dem(plan: LayerPlan, options: Any, bounds: tuple[float, float, float, float] | None,
         resolution: float | None = None) -> Any:
    """The DEM under ``bounds`` (working CRS) only: a worker never holds the whole DEM (a parent
    holds block means a quarter of its grid cell: the root of a city does not hold its DEM)."""
    from pipelines.drape import DemGrid

    if options.dem is None or bounds is None:
        return DemGrid.flat()
    return DemGrid.window(options.dem, _grow(bounds, 10.0), CRS.from_wkt(plan.working_crs), resolution)


def _union(*boxes: Any) -> tuple[float, float, float, float] | None:
    b = np.array([x for x in boxes if x is not None and np.all(np.isfinite(x))], float).reshape(-1, 4)
    if not len(b):
        return None
    return float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max())


def _set_bounds(s: Any) -> tuple[float, float, float, float] | None:
    """What a surface set draws, extra meshes included (WKB lines of ``extra_columns``)."""
    geoms = [p for p in s.polygons if p is not None]
    for values in s.extra_columns.values():
        geoms += [shapely.from_wkb(v) for v in values if isinstance(v, bytes)]
    return tuple(shapely.total_bounds(np.array(geoms, dtype=object))) if geoms else None


def _prepare(plan: LayerPlan, options: Any, w: LayerWorker, src: Any, owned: np.ndarray,
             dups: dict[int, str], dem: Any) -> tuple[Any, Any, np.ndarray, dict[str, Any], np.ndarray, np.ndarray]:
    rows = np.asarray(src.fids, np.int64) - plan.fid_base
    local = {i: dups[int(r)] for i, r in enumerate(rows) if int(r) in dups}
    state: dict[str, np.ndarray] = {}

    def after_clean(acc: Any, geoms: np.ndarray) -> None:
        rej = acc.rejected
        state["alive"] = np.array([r not in rej or rej[r].code == "outside_boundary" for r in range(acc.n_input)],
                                  bool)
        for r, kept in local.items():
            if r in rej and rej[r].code != "outside_boundary":
                continue
            rej.pop(r, None)
            acc.reject(r, "duplicate_id", f"id {kept} already used by an earlier feature with different "
                                          "geometry/attributes", field="id", related_id=str(kept))
            geoms[r] = None

    boundary = load_boundary(find_boundary(Path(plan.src), options.boundary))
    s, report, written, stats = w.prepare(src, dem, boundary, after_clean, owned)
    alive = state.get("alive", np.zeros(len(rows), bool))
    return s, report, written, stats, rows, alive


def _frame(plan: LayerPlan) -> EnuFrame:
    return EnuFrame.at_lonlat(*plan.frame)


def _encode(plan: LayerPlan, options: Any, w: LayerWorker, s: Any, folder: Path, dem: Any,
            cell: tuple[int, int, int, tuple[float, float, float, float]], single_height: int | None = None
            ) -> dict[str, Any] | None:
    if s is None:
        return None
    if w.kind == "instances":
        return pc.encode_instances(w, options, s, folder, _frame(plan), cell, single=single_height is not None)
    return pc.encode_surfaces(w, options, s, folder, _frame(plan), cell, dem, single_height)


# ------------------------------------------------------------------------------------ tasks
def run_layer_partition(plan: LayerPlan, options: Any, cell_key: str, dups: dict[int, str] | None = None
                        ) -> dict[str, Any]:
    """One cell: read its bbox, check, draw and encode what it owns (module docstring)."""
    with using_geoid(plan.geoid), using_working_crs(CRS.from_wkt(plan.working_crs)):
        s = _run_partition(plan, options, cell_key, dict(dups or {}))
    return {"cell": s["cell"], "rss_mb": s["rss_mb"]}


def _run_partition(plan: LayerPlan, options: Any, cell_key: str, dups: dict[int, str]) -> dict[str, Any]:
    t0, cpu0 = time.perf_counter(), time.process_time()
    w = worker(plan.layer)
    level, cx, cy = (int(v) for v in cell_key.split("/"))
    bounds = pt.cell_bounds(plan.square, level, cx, cy)
    to_layer = Transformer.from_crs(CRS.from_wkt(plan.working_crs), CRS.from_wkt(plan.layer_crs), always_xy=True)
    folder = pt.fresh_task_dir(Path(plan.work) / cell_key.replace("/", "_"))
    region = _grow(bounds, w.margin_m)
    bbox = to_layer.transform_bounds(*region, densify_pts=21)
    src = _read(plan, options, w, bbox=bbox)
    reads = [{"bbox": list(bbox), "read": len(src.gdf), "scan": src.scan}]  # scan: GeoParquet row groups
    env = _envelopes(plan, src)
    owned = _owned(plan, env, level, cx, cy)
    if w.margin_m > 0 and owned.any():  # the owned features' whole envelopes, and the roads around them
        e = env[owned]
        need = _grow((e[:, 0].min(), e[:, 1].min(), e[:, 2].max(), e[:, 3].max()), w.margin_m)
        if need[0] < region[0] or need[1] < region[1] or need[2] > region[2] or need[3] > region[3]:
            region = (min(need[0], region[0]), min(need[1], region[1]), max(need[2], region[2]),
                      max(need[3], region[3]))
            bbox = to_layer.transform_bounds(*region, densify_pts=21)
            src = _read(plan, options, w, bbox=bbox)
            reads.append({"bbox": list(bbox), "read": len(src.gdf), "scan": src.scan})
            owned = _owned(plan, _envelopes(plan, src), level, cx, cy)
    env = _envelopes(plan, src)
    dem = _dem(plan, options, _union(region, *(env[np.isfinite(env).all(axis=1)] if len(env) else [])))
    s, report, written, stats, rows, alive = _prepare(plan, options, w, src, owned, dups, dem)
    mine = np.flatnonzero(owned)
    summary = _account(folder, report, rows, mine, written, alive, stats)
    if s is not None:
        s.rows = rows[np.asarray(s.rows, np.int64)]  # source rows: parents order and merge by them
    if s is not None and w.kind == "surfaces":
        s = pc.clip_surfaces(s, bounds)
    enc = _encode(plan, options, w, s, folder, dem, (level, cx, cy, bounds))
    summary.update(enc or {"root": None})
    summary.update({"cell": cell_key, "bbox": reads[0]["bbox"], "read": reads[0]["read"], "reads": reads,
                    "owned": int(owned.sum()), "seconds": round(time.perf_counter() - t0, 3),
                    "cpu_s": round(time.process_time() - cpu0, 3), "rss_mb": round(pt.peak_rss_mb(), 1),
                    "pid": os.getpid(), "dups": sorted(int(r) for r in dups)})
    np.save(folder / "read_rows.npy", rows)
    del s, src, dem
    gc.collect()  # the partition's arrays go before the next one (an in-process run, a Dask worker)
    return pt.mark_done(folder, summary)


def _account(folder: Path, report: Any, rows: np.ndarray, mine: np.ndarray, written: np.ndarray,
             alive: np.ndarray, stats: dict[str, Any]) -> dict[str, Any]:
    """The owned rows' report, written rows and ids (the client merges and checks them)."""
    own = np.zeros(len(rows), bool)
    own[mine] = True
    written = np.asarray(written, np.int64)
    written = written[own[written]] if len(written) else written
    ids_alive = own & alive
    pt.write_ids(folder, report.ids[ids_alive], rows[ids_alive])
    np.save(folder / "written.npy", rows[written])
    np.save(folder / "rows.npy", rows[mine])
    (folder / "report.json").write_text(json.dumps(pt.export_report(report, rows, mine)), encoding="utf-8")
    return {"written": int(len(written)), "owned_rows": int(len(mine)), "stats": stats}


def run_layer_orphans(plan: LayerPlan, options: Any, fids: list[int], dups: dict[int, str] | None = None
                      ) -> dict[str, Any]:
    """Rows no cell owns (no geometry, coordinates rejected): read by feature id and accounted."""
    with using_geoid(plan.geoid), using_working_crs(CRS.from_wkt(plan.working_crs)):
        w = worker(plan.layer)
        folder = pt.fresh_task_dir(Path(plan.work) / "orphans")
        src = _read(plan, options, w, fids=fids)
        dem = _dem(plan, options, None)  # rows without a usable geometry: nothing to sample
        owned = np.ones(len(src.gdf), bool)
        _s, report, written, stats, rows, alive = _prepare(plan, options, w, src, owned, dict(dups or {}), dem)
        summary = _account(folder, report, rows, np.arange(len(rows)), written, alive, stats)
        summary.update({"cell": "orphans", "read": len(fids), "root": None})
        pt.mark_done(folder, summary)
        return {"cell": "orphans"}


def run_layer_parent(plan: LayerPlan, options: Any, key: str, children: list[dict[str, Any]]) -> dict[str, Any]:
    """A tile above the partition level, from its children's ``top.parquet`` only."""
    with using_geoid(plan.geoid), using_working_crs(CRS.from_wkt(plan.working_crs)):
        t0 = time.perf_counter()
        w = worker(plan.layer)
        folder = pt.fresh_task_dir(Path(plan.work) / key.replace("/", "_"))
        dirs = [Path(plan.work) / c["task"].replace("/", "_") for c in children]
        level, x, y = (int(v) for v in key.split("/"))
        bounds = pt.cell_bounds(plan.square, level, x, y)
        depth = 1 + max(int(c["depth_below"]) for c in children)
        dem = None
        if w.kind == "instances":
            s = pc.load_instance_tops(dirs, w.template)
        else:
            s = pc.load_surface_tops(dirs)
            grid = min(w.build_kw.get("leaf_cell", 8.0) * 2.0 ** depth, w.build_kw.get("max_cell", 64.0))
            dem = _dem(plan, options, _union(bounds, _set_bounds(s) if s is not None else None), grid / 4.0)
        enc = _encode(plan, options, w, s, folder, dem, (level, x, y, bounds), single_height=depth)
        rest_max = max(float(c.get("rest_max", 0.0)) for c in children)
        summary = {"cell": key, "task": key, "child_hashes": [c["hash"] for c in children], "root": key,
                   "has_content": enc is not None, "depth_below": depth,
                   "rest_max": max(rest_max, float((enc or {}).get("rest_max", 0.0))),
                   "seconds": round(time.perf_counter() - t0, 3), "rss_mb": round(pt.peak_rss_mb(), 1),
                   "pid": os.getpid()}
        pt.mark_done(folder, summary)
        return {"cell": key}
