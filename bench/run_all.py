"""`make bench`: run every benchmark and print its figures (nothing here asserts a time).

Inputs are generated under var/bench/ on first use (scale-1 and scale-3 sample districts) and
reused afterwards. Each benchmark is its own script; a failing one is reported and the rest go on.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "var" / "bench"
PY = sys.executable


def sh(title: str, args: list[str]) -> bool:
    print(f"\n=== {title}\n$ {' '.join(args)}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(args, cwd=REPO)
    print(f"--- {title}: exit {proc.returncode} in {time.perf_counter() - t0:.1f} s", flush=True)
    return proc.returncode == 0


def sample(scale: int) -> Path:
    out = BENCH / f"sample-s{scale}"
    if not (out / "clean" / "README.txt").exists():
        sh(f"generate scale-{scale} sample", [PY, "-m", "onemap.cli", "sample", "generate",
                                              "--out", str(out), "--seed", "7", "--scale", str(scale)])
    return out


def district_build(sample_dir: Path) -> None:
    out = BENCH / "tiles-s1"
    t0 = time.perf_counter()
    ok = sh("whole district build (goal < 90 s)", [PY, "-m", "onemap.cli", "tiles", "build",
                                                    "--sample", str(sample_dir), "--out", str(out)])
    seconds = time.perf_counter() - t0
    index = out / "index.json"
    if ok and index.exists():
        catalog = json.loads(index.read_text())
        print(f"district build: {seconds:.1f} s wall")
        for layer in catalog["layers"]:
            mb = layer["bytes"] / 1e6
            print(f"  {layer['name']:<11} {mb:8.2f} MB  features {layer.get('features', '?')}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", nargs="*", default=None,
                    help="subset: buildings scale imagery district postgis api viewer load")
    ap.add_argument("--big", action="store_true", help="scale benchmark also at scale 30 (≈3.2 M buildings)")
    ap.add_argument("--events", type=int, default=1_000_000, help="events for the PostGIS and API benchmarks")
    ap.add_argument("--fixes", type=int, default=10_000_000, help="GPS fixes for the PostGIS benchmark")
    ap.add_argument("--load-minutes", type=float, default=10.0,
                    help="minutes of the load-and-faults benchmark (300 devices, PostgreSQL stopped 20 s)")
    args = ap.parse_args()
    want = set(args.only or ["buildings", "scale", "imagery", "district", "postgis", "api", "viewer", "load"])
    BENCH.mkdir(parents=True, exist_ok=True)
    s1 = sample(1)
    if "buildings" in want:
        sh("buildings, scale 1", [PY, "bench/bench_buildings.py", str(s1)])
        sh("buildings, scale 3", [PY, "bench/bench_buildings.py", str(sample(3))])
    if "scale" in want:
        sh("city scale: partitioned buildings on Dask, 1 vs 2 workers, scales 3, 10" + (", 30" if args.big else ""),
           [PY, "bench/bench_scale.py", *(["--big"] if args.big else [])])
    if "imagery" in want and (REPO / "bench" / "bench_imagery_mesh.py").exists():
        sh("orthophoto imagery pyramid and reality mesh, scale 1", [PY, "bench/bench_imagery_mesh.py", str(s1)])
    if "district" in want:
        district_build(s1)
    if "postgis" in want and (REPO / "bench" / "bench_postgis.py").exists():
        sh("PostGIS loads and analytics (design volume: 1 M events, 10 M fixes)",
           [PY, "bench/bench_postgis.py", "--events", str(args.events), "--fixes", str(args.fixes)])
    if "api" in want and (REPO / "bench" / "bench_api.py").exists():
        tiles = BENCH / "tiles-s1"
        extra = ["--tiles", str(tiles)] if (tiles / "index.json").exists() else []
        sh("API vs tipg / nginx / SSE", [PY, "bench/bench_api.py", "--events", str(args.events), *extra])
    if "viewer" in want and (REPO / "bench" / "bench_viewer.py").exists():
        sh("viewer first complete view", [PY, "bench/bench_viewer.py"])
    if "load" in want:
        tiles = BENCH / "tiles-s1"
        sh("load and faults: 300 devices, 30 viewers, 5 operators, PostgreSQL stopped 20 s",
           [PY, "bench/bench_load.py", "--minutes", str(args.load_minutes), "--sample", str(s1), "--tiles", str(tiles)])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
