"""The client of a partitioned roads, trees or furniture run (:mod:`pipelines.layer_partitions`).

It schedules the partition tasks (in this process or on Dask), resolves duplicate ids across
partitions (re-running the few tasks that read such a row), accounts the rows no partition
owns, runs the parent levels, merges the reports and assembles ``tileset.json`` from the
partitions' subtrees and the parents' tiles, hard-linking every glb into the staging folder.
The layer's ``build_<layer>`` then writes its report and publishes (:mod:`pipelines.publish`).

The work folder ``OUT.partial-<hash>`` survives a killed or failed run: started again with the
same inputs and options, the run skips every task whose ``done.json`` is there; the caller
deletes it once the output is published (:meth:`LayerRun.cleanup`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from core.frames import EnuFrame, active_geoid
from pipelines import partitions as pt
from pipelines.instanced import aabb_box
from pipelines.layer_partitions import LayerPlan, run_layer_orphans, run_layer_parent, run_layer_partition, worker
from pipelines.progress import Progress, report
from pipelines.publish import digest
from pipelines.report_merge import MergedReport
from tiles.tileset import OrientedBox


@dataclass
class LayerRun:
    """What a partitioned run produced: the merged accounting, the output figures and the folders."""

    report: Any
    tileset: Path | None = None
    output: dict[str, Any] = field(default_factory=dict)
    work: pt.WorkDir | None = None
    temp: Path | None = None

    def cleanup(self) -> None:
        if self.work is not None:
            self.work.cleanup()
        if self.temp is not None:
            shutil.rmtree(self.temp, ignore_errors=True)


def _sum_stats(into: dict[str, Any], stats: dict[str, Any]) -> None:
    for k, v in stats.items():
        if isinstance(v, dict):
            _sum_stats(into.setdefault(k, {}), v)
        else:
            into[k] = into.get(k, 0) + v


def _walk(tile: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield tile
    for c in tile.get("children", []):
        yield from _walk(c)


def _monotonic(tile: dict[str, Any]) -> float:
    if tile.get("children"):
        tile["geometricError"] = max(float(tile["geometricError"]), max(_monotonic(c) for c in tile["children"]))
    return float(tile["geometricError"])


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _subtree(folder: Path) -> dict[str, Any]:
    root = json.loads((folder / "tileset.json").read_text(encoding="utf-8"))["root"]
    root.pop("transform", None)
    return root


def _assemble(work: pt.WorkDir, summaries: dict[str, dict[str, Any]], parents: dict[str, dict[str, Any]],
              children_of: dict[str, list[str]], stage: Path) -> tuple[dict[str, Any], int, int]:
    """The tileset's root (dict), tiles linked into ``stage``; (root, tiles, bytes)."""
    tiles = nbytes = 0

    def node(key: str) -> dict[str, Any]:
        nonlocal tiles, nbytes
        if key in summaries:
            folder = work.task_dir(key)
            tree = _subtree(folder)
            for t in _walk(tree):
                if "content" in t:
                    _link(folder / t["content"]["uri"], stage / t["content"]["uri"])
                    tiles += 1
                    nbytes += (folder / t["content"]["uri"]).stat().st_size
            return tree
        kids = [node(c) for c in children_of[key]]
        boxes = [OrientedBox.from_json(k["boundingVolume"]["box"]) for k in kids]
        error = max(max(float(k["geometricError"]) for k in kids), float(parents[key]["rest_max"]))
        d: dict[str, Any] = {"refine": "REPLACE"}
        if parents[key].get("has_content"):
            folder = work.task_dir(key)
            own = _subtree(folder)
            uri = own["content"]["uri"]
            _link(folder / uri, stage / uri)
            tiles += 1
            nbytes += (folder / uri).stat().st_size
            boxes.append(OrientedBox.from_json(own["boundingVolume"]["box"]))
            error = max(error, float(own["geometricError"]))
            d["content"] = {"uri": uri, "boundingVolume": own["boundingVolume"]}
        box = aabb_box(np.vstack([b.corners() for b in boxes]))
        return {"boundingVolume": {"box": box.to_json()}, "geometricError": error, **d, "children": kids}

    root = node("0/0/0")
    _monotonic(root)
    return root, tiles, nbytes


def run_layer_partitioned(plan: LayerPlan, out: Path, options: Any, stage: Path | None,
                          progress: Progress | None) -> LayerRun:
    """Run every task and, unless ``stage`` is None (a dry run), assemble the tileset into it."""
    t0 = time.perf_counter()
    w = worker(plan.layer)
    temp = Path(tempfile.mkdtemp(prefix="onemap-partitions-")) if stage is None else None
    work = pt.WorkDir(temp / "out" if temp else Path(out), plan.settings)
    plan = replace(plan, work=str(work.path))
    cells = pt.grid_cells(plan.square, plan.level, plan.extent)
    stages: dict[str, float] = {}
    run = LayerRun(report=None, work=work, temp=temp)
    try:
        with pt.Engine(pt.resolve_address(options.dask)) as engine:
            stage_run = pt.run_partition_stage(
                engine, work, cells, (plan, options), run_layer_partition, run_layer_orphans, plan.n_input,
                plan.fid_base, plan.src, "read_rows.npy", lambda k: work.done(k) or {},
                lambda done, total: report(progress, "partitions", done, total))
            summaries, resumed, folders = stage_run.summaries, stage_run.resumed, stage_run.folders
            stages["partitions"] = round(stage_run.partitions_done - t0, 3)
            # parent levels, from the children's top content only
            level_nodes = {k: {"task": k, "hash": digest([plan.settings, k, *map(str, s.get("dups", []))]),
                               "depth_below": s["depth_below"], "rest_max": s["rest_max"]}
                           for k, s in summaries.items() if s.get("root")}
            parents: dict[str, dict[str, Any]] = {}
            children_of: dict[str, list[str]] = {}
            for level in range(plan.level - 1, -1, -1):
                groups: dict[str, list[dict[str, Any]]] = {}
                for key in sorted(level_nodes):
                    lv, x, y = (int(v) for v in key.split("/"))
                    groups.setdefault(f"{lv - 1}/{x // 2}/{y // 2}", []).append(level_nodes[key])
                calls = []
                for pkey, kids in groups.items():
                    children_of[pkey] = [k["task"] for k in kids]
                    done = work.done(pkey)
                    if done is None or done.get("child_hashes") != [k["hash"] for k in kids]:
                        calls.append((plan, options, pkey, kids))
                engine.map(run_layer_parent, calls)
                level_nodes = {}
                for pkey, kids in groups.items():
                    parents[pkey] = work.done(pkey) or {}
                    level_nodes[pkey] = {"task": pkey,
                                         "hash": digest([plan.settings, pkey, *(k["hash"] for k in kids)]),
                                         "depth_below": parents[pkey]["depth_below"],
                                         "rest_max": parents[pkey]["rest_max"]}
                report(progress, "levels", plan.level - level, plan.level)
            stages["levels"] = round(time.perf_counter() - t0 - stages["partitions"], 3)
            stages["engine_start"] = engine.start_seconds
            workers = engine.workers
        acc = MergedReport(w.name, plan.src, plan.n_input, folders)  # one task's issues at a time
        stats: dict[str, Any] = {}
        for s in summaries.values():
            _sum_stats(stats, s.get("stats", {}))
        if (work.task_dir("orphans") / pt.DONE).exists() and stage_run.orphans:
            _sum_stats(stats, (work.done("orphans") or {}).get("stats", {}))
        if w.finish is not None:
            w.finish(acc, stats)
        run.report = acc
        fields = ("cell", "bbox", "read", "reads", "owned", "written", "seconds", "cpu_s", "rss_mb", "pid")
        tasks = [{k: s.get(k) for k in fields} for s in summaries.values()]
        run.output["partitions"] = {"level": plan.level, "cells": len(cells), "resumed": resumed,
                                    "stage_seconds": stages, "workers": workers, "dask": options.dask or None,
                                    "tasks": tasks, "peak_rss_mb": max((t["rss_mb"] or 0) for t in tasks)}
        if stage is None or "0/0/0" not in parents and "0/0/0" not in summaries:
            return run
        root, tiles, nbytes = _assemble(work, summaries, parents, children_of, stage)
        frame = EnuFrame.at_lonlat(*plan.frame)
        root["transform"] = [float(v) for v in frame.tileset_transform()]
        root_error = float(root["geometricError"])
        doc = {"asset": {"version": "1.1", "generator": "onemap"}, "geometricError": max(2.0 * root_error, 1.0),
               "root": root, "extras": {"layer": w.build_kw.get("class_name", w.name), "partitioned": True,
                                         "heights": active_geoid().metadata()}}
        stage.mkdir(parents=True, exist_ok=True)
        run.tileset = stage / "tileset.json"
        run.tileset.write_text(json.dumps(doc, separators=(",", ":")), encoding="utf-8")
        run.output.update({"tiles": tiles, "bytes": nbytes, "root_geometric_error_m": round(root_error, 3),
                           "seconds": round(time.perf_counter() - t0, 2)})
        return run
    except BaseException:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
        raise


def build_layer_partitioned(plan: LayerPlan, src: Path, out: Path, options: Any,
                            progress: Progress | None) -> Any:
    """A one-tileset layer (roads, furniture) built in partitions, reported and published like its
    one-piece build: ``OUT/tileset.json``, ``OUT/tiles/``, ``OUT/report.json``; returns the report."""
    from pyproj import CRS

    from core.delivery.checks import find_boundary
    from core.frames import using_geoid, using_working_crs
    from pipelines.publish import Staging

    out = Path(out)
    staging = None if options.dry_run else Staging(out)
    try:
        with using_geoid(options.geoid), using_working_crs(CRS.from_wkt(plan.working_crs)):
            run = run_layer_partitioned(plan, out, options, staging.tmp if staging is not None else None, progress)
            acc = run.report
            if options.dem is None:
                acc.note("no DEM given: drawn at 0 m orthometric")
            if find_boundary(src, options.boundary) is None:
                acc.note("no boundary.gpkg found or given: outside_boundary not checked")
            acc.finalize()
            acc.output.update(run.output)
            acc.output["heights"] = active_geoid().metadata()
            acc.write(staging.tmp if staging is not None else out)
            if staging is not None:
                staging.publish()
    except BaseException:
        if staging is not None:
            staging.abort()
        raise
    run.cleanup()
    return acc
