"""The client of a partitioned buildings run (:mod:`pipelines.building_partitions`): schedule the
partition tasks, resolve duplicate ids across them, account orphan rows, run the parent levels,
then assemble tileset.json, the manifest and the report from the small summaries and publish.

The work folder ``OUT.partial-<hash>`` (hash of source path/size/mtime, options, level, geoid)
survives a killed or failed run: started again with the same inputs, the run skips every task
whose ``done.json`` is there. It is deleted once the output is published.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.frames import EnuFrame, active_geoid
from pipelines import partitions as pt
from pipelines.building_partitions import Plan, run_orphans, run_parent, run_partition
from pipelines.building_tiles import size_report
from pipelines.progress import Progress, report
from pipelines.publish import MANIFEST, Staging
from pipelines.report_merge import MergedReport
from tiles.tileset import OrientedBox, Tile, Tileset, box_enclosing, enforce_monotonic_errors

if TYPE_CHECKING:
    from pipelines.buildings import BuildingOptions, BuildResult

VERSION = "buildings-1"


def _light(summary: dict[str, Any] | None) -> dict[str, Any] | None:
    """A task summary without the building ids of its tiles (the client never holds all ids)."""
    if summary is not None:
        for info in summary.get("tiles", {}).values():
            info.pop("ids", None)
    return summary


def _stream_manifest(path: Path, head: dict[str, Any], folders: list[Path]) -> None:
    """OUT/.build/manifest.json (:mod:`pipelines.publish`), written task by task."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        f.write(json.dumps(head, separators=(",", ":"))[:-1] + ',"tiles":{')
        first = True
        for folder in folders:
            tiles = json.loads((folder / pt.SUMMARY).read_text(encoding="utf-8"))["tiles"]
            for key in sorted(tiles):
                info = {"uri": f"tiles/{key}.glb",
                        **{k: v for k, v in tiles[key].items() if k not in ("key", "children")}}
                f.write(("" if first else ",") + json.dumps(key) + ":" + json.dumps(info, separators=(",", ":")))
                first = False
        f.write("}}")


def _tile(key: str, infos: dict[str, dict[str, Any]], staging: Staging, dirs: dict[str, Path]) -> Tile:
    info = infos[key]
    children = [_tile(c, infos, staging, dirs) for c in info["children"]]
    uri = f"tiles/{key}.glb"
    src = dirs[key] / uri
    dst = staging.tmp / uri
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    box = box_enclosing([OrientedBox.from_json(info["content_box"]), *[c.box for c in children]])
    return Tile(box=box, geometric_error=float(info["error"]), content_uri=uri, children=children, refine="REPLACE")


def build_partitioned(plan: Plan, out: Path | str | None, options: BuildingOptions,
                      progress: Progress | None) -> BuildResult:
    from pipelines.buildings import BuildResult

    t0 = time.perf_counter()
    dry = out is None or options.dry_run
    temp = Path(tempfile.mkdtemp(prefix="onemap-partitions-")) if dry else None
    work = pt.WorkDir(temp / "out" if temp else Path(out), plan.settings)  # type: ignore[arg-type]
    plan = replace(plan, work=str(work.path))
    cells = pt.grid_cells(plan.square, plan.level, plan.extent)
    stages: dict[str, float] = {}
    try:
        with pt.Engine(pt.resolve_address(options.dask)) as engine:
            if engine.client is None:  # in-process: the tiles of a partition on options.workers cores
                plan = replace(plan, inner_workers=max(1, options.workers))
            stage = pt.run_partition_stage(
                engine, work, cells, (plan, options), run_partition, run_orphans, plan.n_input, plan.fid_base,
                plan.src, "rows.npy", lambda k: _light(work.done(k)) or {},
                lambda done, total: report(progress, "partitions", done, total))
            summaries, resumed, folders = stage.summaries, stage.resumed, stage.folders
            stages["partitions"] = round(stage.partitions_done - t0, 3)
            # parent levels, from the children's tallest buildings only
            level_nodes = {k: s for k, s in summaries.items() if s.get("root")}
            parents: dict[str, dict[str, Any]] = {}
            for level in range(plan.level - 1, -1, -1):
                groups: dict[str, list[dict[str, Any]]] = {}
                for key in sorted(level_nodes):
                    lv, x, y = (int(v) for v in key.split("/"))
                    groups.setdefault(f"{lv - 1}/{x // 2}/{y // 2}", []).append(level_nodes[key])
                calls = []
                level_nodes = {}
                for pkey, kids in groups.items():
                    done = _light(work.done(pkey))
                    children = [{"root": c["root"], "hash": c["tiles"][c["root"]]["hash"],
                                 **{f: c[f] for f in ("depth_below", "rest_max", "max_height")}} for c in kids]
                    hashes = [c["hash"] for c in children]
                    if done is not None and done.get("child_hashes") == hashes:
                        level_nodes[pkey] = done
                    else:
                        calls.append((plan, options, pkey, children))
                for s in engine.map(run_parent, calls):
                    level_nodes[s["cell"]] = _light(work.done(s["cell"])) or {}
                parents.update(level_nodes)
                report(progress, "levels", plan.level - level, plan.level)
            stages["levels"] = round(time.perf_counter() - t0 - stages["partitions"], 3)
            stages["engine_start"] = engine.start_seconds
            workers = engine.workers
        acc = MergedReport("buildings", plan.src, plan.n_input, folders)
        acc.require_accepted(int(acc.counts["written"]), "no building to publish",
                             hint="fix the delivery (the reasons are listed above)")
        result = BuildResult(out=None if dry else Path(out), report=acc)  # type: ignore[arg-type]
        infos: dict[str, dict[str, Any]] = {}
        dirs: dict[str, Path] = {}
        for key, s in [*summaries.items(), *parents.items()]:
            for tkey, info in s.get("tiles", {}).items():
                infos[tkey], dirs[tkey] = info, work.task_dir(key)
        result.tiles = len(infos)
        fields = ("cell", "bbox", "read", "scan", "owned", "written", "seconds", "cpu_s", "rss_mb", "pid")
        parts = [{k: s.get(k) for k in fields} for s in summaries.values()]
        acc.output["partitions"] = {"level": plan.level, "cells": len(cells), "resumed": resumed,
                                    "stage_seconds": dict(stages),
                                    "workers": workers, "dask": options.dask or None, "tasks": parts,
                                    "peak_rss_mb": max((p["rss_mb"] or 0) for p in parts)}
        if dry:
            acc.finalize()
            result.seconds = time.perf_counter() - t0
            return result
        root_key = "0/0/0"
        staging = Staging(Path(out))  # type: ignore[arg-type]
        try:
            root = _tile(root_key, infos, staging, dirs)
            enforce_monotonic_errors(root)
            frame = EnuFrame.at_lonlat(*plan.frame)
            root.transform = frame.tileset_transform()
            max_h = max(float(s.get("max_height", 0.0)) for s in [*summaries.values(), *parents.values()])
            Tileset(root=root, geometric_error=max(max_h, root.geometric_error),
                    extras={"layer": "buildings", "generator": VERSION}).write(staging.tmp / "tileset.json")
            result.tiles_written = len(infos)
            result.bytes = sum(t["bytes"] for t in infos.values())
            result.gzip_bytes = sum(t["gzip_bytes"] for t in infos.values())
            acc.finalize()
            result.seconds = time.perf_counter() - t0
            acc.output.update({"tiles": result.tiles, "tiles_written": result.tiles_written, "tiles_reused": 0,
                               "bytes": result.bytes, "gzip_bytes": result.gzip_bytes,
                               "seconds": round(result.seconds, 3), "lod": options.lod,
                               "heights": active_geoid().metadata(),
                               **size_report(infos.values(), int(acc.counts["written"]), options.compress)})
            acc.write(staging.tmp)
            _stream_manifest(staging.tmp / MANIFEST, {
                "version": VERSION, "settings": plan.settings,
                "frame": {"origin_ecef": list(frame.origin_ecef), "lon": frame.lon_deg, "lat": frame.lat_deg}},
                sorted({dirs[k] for k in infos}))
            staging.publish()
        except BaseException:
            staging.abort()
            raise
        work.cleanup()
        stages["write"] = round(time.perf_counter() - t0 - stages["partitions"] - stages["levels"], 3)
        result.stage_seconds = stages
        return result
    finally:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
