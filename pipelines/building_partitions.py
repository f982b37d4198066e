"""Buildings at city scale: spatial partitions, read by bounding box, encoded independently.

The root square (from the layer's declared extent, never from its features) is cut into the
quadtree cells of one level L (:mod:`pipelines.partitions`). A building belongs to the cell
holding its footprint's point on surface in the working CRS (half-open cells: exactly one), a
point of the geometry, so the owner's bbox read returns it whatever the reader's filter. Each
**partition task** reads only its cell's bounding box from the source (GeoPackage / FlatGeobuf
spatial index, GeoParquet row groups and bbox covering; Shapefile scans), keeps the buildings it
owns, cleans them with the same rules as before (:func:`pipelines.buildings.prepare_buildings`),
builds its own quadtree below level L and encodes every tile of it, exactly like the one-piece
build. It writes, into its own folder:
the glb tiles, ``summary.json`` (tile boxes, errors, ids, sizes), ``report.json`` (its
rejections and repairs, numbered by source row), ``top.parquet`` (its ``max_features`` tallest
buildings: what the parent levels draw) and ``ids.parquet`` (the ids alive when the duplicate-id
rule runs).

**Parent tasks** (levels L-1 … 0) read only their children's ``top.parquet``: the tallest
``max_features`` of a subtree are the tallest of the union of its children's tallest, so inner
tiles are the same as a whole-input build would make; the geometricError adds the children's
tallest omitted building. **Duplicate ids across partitions**: the client hashes the ids of
every partition (16 bytes a building), confirms collisions with the real ids, and re-runs the few
partitions holding a later copy with it rejected (``duplicate_id``, the first row kept, as
before). Rows no partition owns (no geometry, bad coordinates) are read by feature id and
accounted by one more task, which draws nothing (a usable building there: ``unowned``). The
client holds per-building only those 16 bytes plus the written rows; tiles are hard-linked from
the work folder into the staging folder and published.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import shapely
from pyproj import CRS, Transformer

from core.delivery import Accounting
from core.delivery.mapping import FieldMapping, load_mapping
from core.delivery.read import read_layer
from core.frames import EnuFrame, active_geoid, using_geoid
from pipelines import partitions as pt
from pipelines.building_tiles import EncoderState, TileJob, building_colors, run_jobs, tile_fingerprint
from pipelines.publish import digest
from tiles import building_mesh as bm
from tiles.tileset import build_quadtree

if TYPE_CHECKING:
    from pipelines.buildings import BuildingOptions, PreparedBuildings

log = logging.getLogger(__name__)

ENGINE_OPTIONS = ("dask", "workers", "dry_run")  # how a run executes, not what it writes
_AFTER_DUP = ("duplicate_id", "outside_boundary", "absurd_height", "missing_height")


@dataclass(frozen=True)
class Plan:
    """What every task needs besides the options (small and picklable)."""

    src: str
    layer: str | None
    layer_crs: str  # WKT
    working_crs: str  # WKT
    square: tuple[float, float, float, float]
    extent: tuple[float, float, float, float]  # the layer's declared extent, working CRS
    level: int
    frame: tuple[float, float, float]  # lon, lat, ellipsoidal h of the ENU origin
    fid_base: int
    n_input: int
    settings: str
    work: str
    geoid: str | None
    inner_workers: int = 1  # forked tile encoders inside a task (in-process engine only)


# ------------------------------------------------------------------------------------ plan
def plan_partitions(src: Path | str, options: BuildingOptions) -> Plan | None:
    """The partition plan, or None when the one-piece build applies (one partition, or a format
    read whole: CSV)."""
    mapping = load_mapping(options.mapping) if options.mapping else FieldMapping()
    probe = pt.probe_source(src, options, mapping)
    if probe is None:
        return None
    path = Path(src)
    stat = path.stat()
    settings = digest(["buildings-partitioned-3", str(path.absolute()), str(stat.st_size), str(stat.st_mtime_ns),
                       _options_key(options), str(probe.level),
                       repr(active_geoid().metadata())])
    return Plan(str(path.absolute()), probe.layer, probe.layer_crs.to_wkt(), probe.working.to_wkt(), probe.square,
                probe.extent, probe.level, probe.frame, probe.fid_base, probe.n, settings, "", options.geoid)


# ------------------------------------------------------------------------------------ helpers
def _options_key(options: BuildingOptions) -> str:
    """The options that shape the output (not how the run executes), normalised."""
    items = {k: v for k, v in vars(options).items() if k not in ENGINE_OPTIONS}
    items["fields"] = sorted((k, v) for k, v in (options.fields or {}).items() if v)
    return repr(sorted(items.items()))


def _read(plan: Plan, options: BuildingOptions, **kwargs: Any):  # noqa: ANN202 - SourceLayer
    from pipelines.buildings import BUILDING_SPECS, FIELD_OPTIONS

    mapping = load_mapping(options.mapping) if options.mapping else FieldMapping()
    return read_layer(plan.src, BUILDING_SPECS, layer_name="buildings", fields=options.fields,
                      field_options=FIELD_OPTIONS, mapping=mapping, encoding=options.encoding,
                      src_crs=options.src_crs, layer=plan.layer, expected_crs=options.expected_crs, **kwargs)


def _frame(plan: Plan) -> EnuFrame:
    return EnuFrame.at_lonlat(*plan.frame)


def _top(b: PreparedBuildings, idx: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` tallest (then largest) of ``idx``, sorted (the inner-tile rule of buildings.py)."""
    order = np.lexsort((-shapely.area(b.footprints[idx]), -b.height[idx]))
    return np.sort(idx[order[:k]])


def _write_top(path: Path, b: PreparedBuildings, idx: np.ndarray, roof_drop: np.ndarray) -> None:
    pd.DataFrame({"row": b.rows[idx], "id": b.ids[idx], "name": b.names[idx], "use": b.uses[idx],
                  "community": b.communities[idx], "roof_name": b.roof_names[idx], "roof": b.roof[idx],
                  "floors": b.floors[idx], "height": b.height[idx], "base": b.base[idx],
                  "roof_drop": roof_drop[idx], "wkb": shapely.to_wkb(b.footprints[idx])}
                 ).to_parquet(path / "top.parquet", index=False)


def _read_tops(dirs: list[Path], working: CRS) -> tuple[PreparedBuildings, np.ndarray]:
    from pipelines.buildings import PreparedBuildings

    df = pd.concat([pd.read_parquet(d / "top.parquet") for d in dirs], ignore_index=True)
    df = df.sort_values("row", kind="stable").reset_index(drop=True)

    def obj(c: str) -> np.ndarray:
        return np.array([None if v is None or (isinstance(v, float) and v != v) else v for v in df[c]], dtype=object)

    b = PreparedBuildings(
        rows=df["row"].to_numpy(np.int64), ids=obj("id"), names=obj("name"), uses=obj("use"),
        communities=obj("community"), roof_names=obj("roof_name"), floors=df["floors"].to_numpy(float),
        height=df["height"].to_numpy(float), roof=df["roof"].to_numpy(), base=df["base"].to_numpy(float),
        footprints=shapely.from_wkb(df["wkb"].to_numpy()), working_crs=working,
        report=Accounting(layer="buildings", source=""))
    return b, df["roof_drop"].to_numpy(float)


def _tile_info(enc: dict[str, Any], key: str, h: str, ids: np.ndarray, children: list[str]) -> dict[str, Any]:
    return {"key": key, "hash": h, "ids": [str(i) for i in ids], "children": children,
            "content_box": enc["content_box"], "error": float(enc["error"]),
            "bytes": int(enc["bytes"]), "gzip_bytes": int(enc["gzip_bytes"]),
            "raw_bytes": int(enc.get("raw_bytes", enc["bytes"]))}


# ------------------------------------------------------------------------------------ tasks
def run_partition(plan: Plan, options: BuildingOptions, cell_key: str,
                  dup_rows: dict[int, str] | None = None) -> dict[str, Any]:
    """One cell: read its bbox, clean, mesh and encode its subtree (module docstring)."""
    with using_geoid(plan.geoid):
        s = _run_partition(plan, options, cell_key, dup_rows or {})
    pt.release_memory()
    return {"cell": s["cell"], "rss_mb": s["rss_mb"]}  # the rest is read from its folder


def _run_partition(plan: Plan, options: BuildingOptions, cell_key: str, dup_rows: dict[int, str]) -> dict[str, Any]:
    from pipelines.buildings import prepare_buildings

    t0, cpu0 = time.perf_counter(), time.process_time()
    level, cx, cy = (int(v) for v in cell_key.split("/"))
    bounds = pt.cell_bounds(plan.square, level, cx, cy)
    layer_crs, working = CRS.from_wkt(plan.layer_crs), CRS.from_wkt(plan.working_crs)
    to_layer = Transformer.from_crs(working, layer_crs, always_xy=True)
    bbox = to_layer.transform_bounds(*bounds, densify_pts=21)
    folder = pt.fresh_task_dir(Path(plan.work) / cell_key.replace("/", "_"))
    layer = _read(plan, options, bbox=bbox)
    n_read, scan = len(layer.gdf), layer.scan  # scan: what a GeoParquet read touched (row groups, rows)
    geoms = np.asarray(layer.gdf.geometry.values, dtype=object)
    ok = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    owned = np.zeros(len(geoms), bool)
    if ok.any():
        # the owner is the cell of the footprint's point on surface in the working CRS, the point the
        # one-piece build places a building by (buildings.py). It lies on the geometry, so the
        # owner's bbox read returns the building: GDAL's filter keeps a feature whose geometry meets
        # the box; the envelope's centre of an L around a cell corner is in a cell the L never meets
        from pipelines.buildings import _transform_geoms

        rp = shapely.point_on_surface(_transform_geoms(geoms[ok], layer_crs, working))
        ix, iy = pt.cell_index(np.column_stack([shapely.get_x(rp), shapely.get_y(rp)]), plan.square, level)
        owned[ok] = (ix == cx) & (iy == cy)
    mine = np.flatnonzero(owned)  # in source order: a spatial index's order (R-tree) is not the file's
    layer = pt.subset_layer(layer, mine[np.argsort(np.asarray(layer.fids, np.int64)[mine], kind="stable")])
    summary = _encode_rows(plan, options, layer, folder, dup_rows, subtree_root=(level, cx, cy, bounds),
                           prepare=prepare_buildings)
    summary.update({"cell": cell_key, "bbox": list(bbox), "read": n_read, "scan": scan, "owned": int(owned.sum()),
                    "seconds": round(time.perf_counter() - t0, 3), "cpu_s": round(time.process_time() - cpu0, 3),
                    "rss_mb": round(pt.peak_rss_mb(), 1), "pid": os.getpid(), "dups": sorted(dup_rows)})
    return pt.mark_done(folder, summary)


def run_orphans(plan: Plan, options: BuildingOptions, fids: list[int]) -> dict[str, Any]:
    """Rows no cell owns (no geometry, coordinates rejected; a usable one: ``unowned``): read by
    feature id and accounted."""
    from pipelines.buildings import prepare_buildings

    with using_geoid(plan.geoid):
        folder = pt.fresh_task_dir(Path(plan.work) / "orphans")
        layer = _read(plan, options, fids=fids)
        summary = _encode_rows(plan, options, layer, folder, {}, None, prepare_buildings)
        summary.update({"cell": "orphans", "read": len(fids)})
        pt.mark_done(folder, summary)
    pt.release_memory()
    return {"cell": "orphans"}


def _encode_rows(plan: Plan, options: BuildingOptions, layer: Any, folder: Path, dup_rows: dict[int, str],
                 subtree_root: tuple[int, int, int, tuple[float, float, float, float]] | None,
                 prepare: Any) -> dict[str, Any]:
    working = CRS.from_wkt(plan.working_crs)
    rows_global = np.asarray(layer.fids, np.int64) - plan.fid_base

    def drop_dups(acc: Accounting, work: np.ndarray) -> None:
        local = {int(r): i for i, r in enumerate(rows_global)}
        for row, kept in dup_rows.items():
            r = local.get(row)
            if r is None:
                continue
            if r in acc.rejected and acc.rejected[r].code == "outside_boundary":
                del acc.rejected[r]
            acc.reject(r, "duplicate_id", f"id {kept} already used by an earlier feature with different "
                                          "geometry/attributes", field="id", related_id=str(kept))
            work[r] = None

    ground = None
    geoms = np.asarray(layer.gdf.geometry.values, dtype=object)
    ok = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    if options.dem is not None and ok.any():
        ground = pt.open_ground(options.dem, tuple(shapely.total_bounds(geoms[ok])), layer.crs)
    b = prepare(layer, options, ground, working=working, after_clean=drop_dups, require=False)
    acc = b.report
    # the ids still alive when the duplicate-id rule ran: the client checks them across cells
    alive_at_dup = np.array([r not in acc.rejected or acc.rejected[r].code in _AFTER_DUP[1:]
                             for r in range(acc.n_input)], bool)
    pt.write_ids(folder, acc.ids[alive_at_dup], rows_global[alive_at_dup])
    if subtree_root is None and len(b):  # the orphans task draws nothing: never count them written
        acc.reject(np.asarray(b.rows, np.int64), "unowned", pt.UNOWNED)
        written = np.empty(0, np.int64)
    else:
        written = rows_global[b.rows]
    np.save(folder / "written.npy", written)
    np.save(folder / "rows.npy", rows_global)
    (folder / "report.json").write_text(json.dumps(pt.export_report(acc, rows_global)), encoding="utf-8")
    summary: dict[str, Any] = {"written": len(written), "root": None, "tiles": {}, "depth_below": 0, "rest_max": 0.0,
                               "max_height": 0.0, "owned_rows": len(rows_global)}
    if len(b) == 0 or subtree_root is None:
        return summary
    level, cx, cy, bounds = subtree_root
    rp = shapely.point_on_surface(b.footprints)
    xy = np.column_stack([shapely.get_x(rp), shapely.get_y(rp)])
    tree = build_quadtree(xy, options.max_features, bounds, max_depth=max(0, 12 - level))
    pt.rekey(tree, level, cx, cy)
    lod2 = options.lod >= 2
    if lod2:
        facets, roof_drop = bm.lod2_facets(b.footprints, b.base, b.height, b.roof, pitch_deg=options.roof_pitch_deg)
    else:
        facets, roof_drop = bm.lod1_facets(b.footprints, b.base + b.height), np.zeros(len(b))
    wkb = shapely.to_wkb(b.footprints)
    jobs, hashes, contents, depth = [], {}, {}, {}
    for node in tree.post_order():
        depth[node.key] = 0 if node.is_leaf else 1 + max(depth[c.key] for c in node.children)
        subtree = np.sort(node.indices)
        content = subtree if node.is_leaf else _top(b, subtree, options.max_features)
        contents[node.key] = content
        hashes[node.key] = digest([plan.settings, node.key, "leaf" if node.is_leaf else "node",
                                   *tile_fingerprint(b, wkb, subtree)])
        jobs.append(TileJob(node.key, node.is_leaf, content, subtree, depth[node.key]))
    state = EncoderState(b, facets, roof_drop, _frame(plan), lod2, folder, options.gzip_level,
                         building_colors(b, False), building_colors(b, True), compress=options.compress)
    encoded = run_jobs(state, jobs, plan.inner_workers, lambda *_: None)
    summary["tiles"] = {n.key: _tile_info(encoded[n.key], n.key, hashes[n.key], b.ids[contents[n.key]],
                                          [c.key for c in n.children]) for n in tree.walk()}
    top = contents[tree.key] if not tree.is_leaf else np.arange(len(b))
    _write_top(folder, b, top, roof_drop)
    rest = np.setdiff1d(np.arange(len(b)), top)
    summary.update({"root": tree.key, "depth_below": depth[tree.key], "max_height": float(b.height.max()),
                    "rest_max": float(b.height[rest].max()) if len(rest) else 0.0})
    return summary


def run_parent(plan: Plan, options: BuildingOptions, key: str, children: list[dict[str, Any]]) -> dict[str, Any]:
    """An inner tile above the partition level, from its children's tallest buildings only."""
    with using_geoid(plan.geoid):
        t0 = time.perf_counter()
        folder = pt.fresh_task_dir(Path(plan.work) / key.replace("/", "_"))
        dirs = [Path(plan.work) / c["root"].replace("/", "_") for c in children]
        b, roof_drop = _read_tops(dirs, CRS.from_wkt(plan.working_crs))
        everything = np.arange(len(b))
        content = _top(b, everything, options.max_features)
        depth = 1 + max(int(c["depth_below"]) for c in children)
        state = EncoderState(b, None, roof_drop, _frame(plan), options.lod >= 2, folder,  # type: ignore[arg-type]
                             options.gzip_level, building_colors(b, False), building_colors(b, True),
                             compress=options.compress)
        enc = run_jobs(state, [TileJob(key, False, content, everything, depth)], 1, lambda *_: None)[key]
        rest_max = max(float(c["rest_max"]) for c in children)
        enc["error"] = max(float(enc["error"]), rest_max)
        h = digest([plan.settings, key, *(c["hash"] for c in children)])
        _write_top(folder, b, content, roof_drop)
        rest = np.setdiff1d(everything, content)
        rest_max = max(rest_max, float(b.height[rest].max()) if len(rest) else 0.0)
        info = _tile_info(enc, key, h, b.ids[content], [c["root"] for c in children])
        pt.mark_done(folder, {
            "cell": key, "child_hashes": [c["hash"] for c in children],
            "root": key, "tiles": {key: info}, "depth_below": depth, "rest_max": rest_max,
            "max_height": max(float(c["max_height"]) for c in children), "written": 0,
            "seconds": round(time.perf_counter() - t0, 3), "rss_mb": round(pt.peak_rss_mb(), 1), "pid": os.getpid()})
    pt.release_memory()
    return {"cell": key}
