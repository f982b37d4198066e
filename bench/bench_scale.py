"""City-scale buildings (issue 14): partitioned build on Dask, 1 vs 2 workers, at growing scales.

For every scale (sample districts laid K x K: scale 3 ≈ 32 k buildings, 10 ≈ 352 k, 30 ≈ 3.2 M with
``--big``) and every worker count it runs ``tiles buildings --dask local:N`` in a child process and
prints: buildings/s (wall, cluster start included), speed-up over 1 worker, the per-worker peak
RSS (``getrusage`` in every task, max over the tasks of each worker process), the client's peak
RSS, the partition level and count, and the mean seconds and buildings of a partition.
Nothing here asserts a time. Samples are generated under var/bench/ (``--layers buildings,dem``).

    python bench/bench_scale.py                 # scales 3 and 10, 1 and 2 workers
    python bench/bench_scale.py --scales 3      # quicker
    python bench/bench_scale.py --big           # adds scale 30
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "var" / "bench"
PY = sys.executable


def sample(scale: int) -> Path:
    out = BENCH / f"scale-s{scale}"
    if not (out / "clean" / "buildings.gpkg").exists() or not (out / "clean" / "dem.tif").exists():
        print(f"generating scale-{scale} buildings + DEM ...", flush=True)
        subprocess.run([PY, "-m", "onemap.cli", "sample", "generate", "--out", str(out), "--seed", "7",
                        "--scale", str(scale), "--layers", "buildings,dem"], cwd=REPO, check=True)
    return out / "clean"


def one(src: Path, out: Path, dask: str, level: int | None) -> dict:
    """Child mode: one build; prints a JSON line with its figures."""
    sys.path.insert(0, str(REPO))
    from pipelines.buildings import BuildingOptions, build_buildings

    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    res = build_buildings(src / "buildings.gpkg", out,
                          BuildingOptions(dem=src / "dem.tif", dask=dask, partition_level=level))
    wall = time.perf_counter() - t0
    parts = res.report.output.get("partitions", {})
    tasks = parts.get("tasks", [])
    per_worker: dict[int, float] = {}
    for t in tasks:
        if t.get("pid"):
            per_worker[t["pid"]] = max(per_worker.get(t["pid"], 0.0), float(t.get("rss_mb") or 0.0))
    busy = [t for t in tasks if t.get("owned")]
    return {"written": res.report.counts["written"], "seconds": round(wall, 2),
            "buildings_per_s": round(res.report.counts["written"] / wall, 1),
            "level": parts.get("level"), "partitions": len(tasks), "busy_partitions": len(busy),
            "partition_s_mean": round(sum(t["seconds"] for t in busy) / max(1, len(busy)), 2),
            "partition_buildings_mean": round(sum(t["owned"] for t in busy) / max(1, len(busy))),
            "partition_cpu_s_mean": round(sum(t.get("cpu_s") or 0 for t in busy) / max(1, len(busy)), 2),
            "stage_seconds": parts.get("stage_seconds", {}),
            "worker_peak_mb": round(max(per_worker.values(), default=0.0)),
            "workers_seen": len(per_worker),
            "client_peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "mb": round(res.bytes / 1e6, 1), "load_avg": round(max(load0, os.getloadavg()[0]), 1)}


def run(scale: int, workers: int, level: int | None) -> dict:
    src = sample(scale)
    out = BENCH / f"scale-tiles-s{scale}-w{workers}"
    for old in [out, *BENCH.glob(f"{out.name}.partial-*")]:  # a full build every time (no resume)
        shutil.rmtree(old, ignore_errors=True)
    proc = subprocess.run([PY, __file__, "--one", str(src), str(out), f"local:{workers}",
                           "" if level is None else str(level)], cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"scale {scale}, {workers} worker(s) failed")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scales", type=int, nargs="*", default=[3, 10])
    ap.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    ap.add_argument("--big", action="store_true", help="add scale 30 (≈3.2 M buildings)")
    ap.add_argument("--level", type=int, default=None, help="partition level (default: from the count)")
    ap.add_argument("--one", nargs=4, metavar=("SRC", "OUT", "DASK", "LEVEL"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        src, out, dask, level = args.one
        print(json.dumps(one(Path(src), Path(out), dask, int(level) if level else None)))
        return 0
    scales = list(args.scales) + ([30] if args.big and 30 not in args.scales else [])
    rows = []
    print(f"{'scale':>5} {'workers':>7} {'buildings':>10} {'s':>7} {'bldg/s':>8} {'speed-up':>8} "
          f"{'level':>5} {'parts':>6} {'part s':>7} {'part cpu':>8} {'part bldg':>9} {'worker MB':>9} "
          f"{'client MB':>9} {'start s':>7} {'load':>5}")
    for scale in scales:
        base = None
        for w in args.workers:
            r = run(scale, w, args.level)
            base = base or r["seconds"]
            r.update({"scale": scale, "workers": w, "speed_up": round(base / r["seconds"], 2)})
            rows.append(r)
            print(f"{scale:>5} {w:>7} {r['written']:>10,} {r['seconds']:>7.1f} {r['buildings_per_s']:>8,.0f} "
                  f"{r['speed_up']:>8.2f} {r['level']:>5} {r['busy_partitions']:>6} {r['partition_s_mean']:>7.2f} "
                  f"{r['partition_cpu_s_mean']:>8.2f} {r['partition_buildings_mean']:>9,} {r['worker_peak_mb']:>9,} "
                  f"{r['client_peak_mb']:>9,} {r['stage_seconds'].get('engine_start', 0):>7.1f} {r['load_avg']:>5.1f}",
                  flush=True)
    (BENCH / "scale.json").write_text(json.dumps(rows, indent=1))
    print(f"figures: {BENCH / 'scale.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
