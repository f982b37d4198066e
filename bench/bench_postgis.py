"""PostGIS overlay benchmark: load rates and analytics latencies (p50/p95), with EXPLAIN excerpts.

Runs in its own database (default ``onemap_bench`` in the embedded cluster, dropped and re-created;
``--url`` for another PostGIS). Reference layers come from a sample delivery (``--sample``, default
``var/bench/sample-s1`` when present) or a synthetic 4.6 km² district; events and GPS fixes are
synthesised at the requested volume and loaded through the real loaders (``gis.loaders``).

    python bench/bench_postgis.py                               # 200 k events, 2 M fixes
    python bench/bench_postgis.py --events 1000000 --fixes 10000000   # the design volume
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import shapely
from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gis import analytics as A  # noqa: E402
from gis import migrate  # noqa: E402
from gis.loaders import connect, load_sample, refresh_statistics  # noqa: E402
from gis.loaders.events import load_events  # noqa: E402
from gis.loaders.gps import load_gps  # noqa: E402
from gis.loaders.io import Mapping  # noqa: E402

X0, Y0 = 535_600.0, 3_643_000.0
SIDE = 2150.0  # 2.15 km x 2.15 km = 4.6 km²
CATEGORIES = [
    "city_appearance",
    "street_order",
    "sanitation",
    "municipal_facilities",
    "greening",
    "illegal_construction",
    "safety_hazard",
    "dispute",
]
END = datetime(2026, 11, 1, tzinfo=UTC)


def synthetic_reference(out: Path, rng: np.random.Generator, workers: int) -> None:
    """grid 10 x 10, communities 2 x 2... as gpkg/csv in the sample-delivery format."""
    out.mkdir(parents=True, exist_ok=True)
    n, cell = 10, SIDE / 10

    def save(name: str, rows: list[dict], geoms: list) -> None:
        gpd.GeoDataFrame(rows, geometry=geoms, crs="EPSG:4548").to_file(out / f"{name}.gpkg", layer=name)

    save(
        "communities",
        [{"id": f"C{i:02d}", "name": f"C{i}"} for i in range(4)],
        [
            shapely.box(
                X0 + (i % 2) * SIDE / 2,
                Y0 + (i // 2) * SIDE / 2,
                X0 + (i % 2 + 1) * SIDE / 2,
                Y0 + (i // 2 + 1) * SIDE / 2,
            )
            for i in range(4)
        ],
    )
    grid_rows, grid_geoms = [], []
    for i in range(n):
        for j in range(n):
            gid = f"G{i * n + j + 1:03d}"
            grid_rows.append({"id": gid, "name": gid, "community_id": f"C{(j // 5) * 2 + i // 5:02d}"})
            grid_geoms.append(shapely.box(X0 + i * cell, Y0 + j * cell, X0 + (i + 1) * cell, Y0 + (j + 1) * cell))
    save("grid_cells", grid_rows, grid_geoms)
    nb = 5000
    cx, cy = rng.uniform(10, SIDE - 30, nb), rng.uniform(10, SIDE - 30, nb)
    w, h = rng.uniform(8, 25, nb), rng.uniform(8, 25, nb)
    save(
        "buildings",
        [
            {"id": f"B{k:06d}", "floors": int(f), "height": float(f * 3.0)}
            for k, f in enumerate(rng.integers(1, 30, nb))
        ],
        list(shapely.box(X0 + cx, Y0 + cy, X0 + cx + w, Y0 + cy + h)),
    )
    lines = [[(X0, Y0 + v), (X0 + SIDE, Y0 + v)] for v in np.arange(50, SIDE, 150)]
    lines += [[(X0 + v, Y0), (X0 + v, Y0 + SIDE)] for v in np.arange(50, SIDE, 150)]
    save(
        "roads",
        [{"id": f"R{k:04d}", "class": "secondary"} for k in range(len(lines))],
        [shapely.LineString(ln) for ln in lines],
    )
    ncam = 500
    save(
        "cameras",
        [
            {
                "id": f"CAM{k:04d}",
                "kind": "street" if k > 1 else "high_altitude",
                "mount_height": 6.0 if k > 1 else 120.0,
                "heading": float(hd),
                "pitch": -10.0,
                "hfov": 70.0 if k > 1 else 360.0,
                "range_m": 120.0 if k > 1 else 3000.0,
                "status": "online" if k % 10 else "offline",
            }
            for k, hd in enumerate(rng.uniform(0, 360, ncam))
        ],
        list(shapely.points(X0 + rng.uniform(0, SIDE, ncam), Y0 + rng.uniform(0, SIDE, ncam))),
    )
    pd.DataFrame(
        {
            "id": [f"W{k:03d}" for k in range(workers)],
            "name": [f"w{k}" for k in range(workers)],
            "kind": ["vehicle" if k % 10 == 0 else "grid_worker" for k in range(workers)],
            "device_id": [f"D{k:03d}" for k in range(workers)],
            "grid_id": [f"G{k % (n * n) + 1:03d}" for k in range(workers)],
        }
    ).to_csv(out / "workers.csv", index=False)
    save(
        "checkpoints",
        [{"id": f"CP{k:03d}", "grid_id": f"G{k % 100 + 1:03d}", "radius_m": 20.0} for k in range(300)],
        list(shapely.points(X0 + rng.uniform(0, SIDE, 300), Y0 + rng.uniform(0, SIDE, 300))),
    )


def synth_events(path: Path, n: int, rng: np.random.Generator, days: int = 365) -> None:
    reported = END - pd.to_timedelta(rng.uniform(0, days * 86400, n), unit="s")
    hot = rng.random(n) < 0.3
    x = np.where(hot, rng.normal(SIDE * 0.3, 80, n), rng.uniform(0, SIDE, n)).clip(0, SIDE - 1)
    y = np.where(hot, rng.normal(SIDE * 0.6, 80, n), rng.uniform(0, SIDE, n)).clip(0, SIDE - 1)
    stage = rng.integers(0, 7, n)  # 0 reported .. 5 closed, 6 rejected
    status = np.array(["reported", "accepted", "dispatched", "handled", "verified", "closed", "rejected"])[stage]
    df = pd.DataFrame(
        {
            "id": [f"E{k:08d}" for k in range(n)],
            "category": np.array(CATEGORIES)[rng.integers(0, 8, n)],
            "priority": np.array(list("ABCD"))[rng.integers(0, 4, n)],
            "source": "grid_worker",
            "description": "",
            "x": X0 + x,
            "y": Y0 + y,
            "status": status,
            "worker_id": "",
        }
    )
    t = pd.Series(reported)
    cols = ["reported_at", "accepted_at", "dispatched_at", "handled_at", "verified_at", "closed_at"]
    elapsed_h = np.zeros(n)
    fmt = "%Y-%m-%dT%H:%M:%S+00:00"
    for k, c in enumerate(cols):
        reached = (stage >= k) & (stage != 6) if k else np.ones(n, bool)
        if k == 1:
            reached |= (stage == 6) & (rng.random(n) < 0.5)
        elapsed_h += rng.uniform(0.5, 6, n) if k else 0.0  # each step 0.5-6 h after the previous one
        df[c] = np.where(reached, (t + pd.to_timedelta(elapsed_h, unit="h")).dt.strftime(fmt), "")
    df["rejected_at"] = np.where(stage == 6, (t + pd.Timedelta(hours=12)).dt.strftime(fmt), "")
    df.to_csv(path, index=False)


def synth_fixes(path: Path, n: int, workers: int, days: int, rng: np.random.Generator) -> None:
    """Random walks, one shift of 8 h a day per worker, written in day order (arrival order)."""
    per_wd = max(2, n // (workers * days))
    dt = 8 * 3600 / per_wd
    writer = None
    from pyproj import Transformer

    tr = Transformer.from_crs("EPSG:4548", "EPSG:4490", always_xy=True)
    for d in range(days):
        start = END - timedelta(days=days - d) + timedelta(hours=1)
        step = rng.normal(0, 1.3 * dt, (workers, per_wd, 2))
        xy = rng.uniform(200, SIDE - 200, (workers, 1, 2)) + np.cumsum(step, axis=1)
        xy = np.abs(np.mod(xy, 2 * SIDE) - SIDE)  # reflect into the district
        lon, lat = tr.transform(X0 + xy[..., 0].ravel(), Y0 + xy[..., 1].ravel())
        t = np.datetime64(start.replace(tzinfo=None)) + (np.arange(per_wd) * dt * 1e6).astype("timedelta64[us]")
        table = pa.table(
            {
                "device_id": np.repeat([f"D{k:03d}" for k in range(workers)], per_wd),
                "worker_id": np.repeat([f"W{k:03d}" for k in range(workers)], per_wd),
                "t": pa.array(np.tile(t, workers), pa.timestamp("us")),
                "lon": lon,
                "lat": lat,
                "speed": np.full(workers * per_wd, 1.3, np.float32),
                "accuracy": rng.uniform(3, 12, workers * per_wd).astype(np.float32),
            }
        )
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    if writer:
        writer.close()


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    p95 = samples[min(len(samples) - 1, int(round(0.95 * (len(samples) - 1))))]
    return statistics.median(samples), p95


def explain(url: str, title: str, sql: str, params: dict, grep: tuple[str, ...]) -> None:
    engine = create_engine(url)
    with engine.connect() as c:
        plan = [r[0] for r in c.execute(text("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql), params)]
    engine.dispose()
    print(f"\nEXPLAIN {title}:")
    shown = [ln for ln in plan if any(g in ln for g in grep)][:8]
    for ln in shown or plan[:6]:
        print("   ", ln.rstrip())
    print("   ", plan[-1].strip())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="libpq URL of an empty PostGIS database to use (default: onemap_bench)")
    ap.add_argument("--sample", type=Path, default=REPO / "var" / "bench" / "sample-s1")
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--fixes", type=int, default=2_000_000)
    ap.add_argument("--workers", type=int, default=200)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    url = args.url or _bench_database()
    sa_url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    migrate.upgrade(sa_url)
    work = Path(tempfile.mkdtemp(prefix="onemap-bench-pg-"))  # ~400 MB of synthetic CSV/Parquet
    try:
        return run(args, rng, url, sa_url, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, rng: np.random.Generator, url: str, sa_url: str, work: Path) -> int:
    clean = work / "clean"
    clean.mkdir(parents=True)
    if (args.sample / "clean" / "grid_cells.gpkg").exists():
        print(f"reference layers from {args.sample}")
        ref_dir = args.sample
        synthetic = False
    else:
        print("reference layers: synthetic 4.6 km² district")
        synthetic_reference(clean, rng, args.workers)
        ref_dir = work
        synthetic = True
    t0 = time.perf_counter()
    ref = load_sample(ref_dir, url=url, gps_limit=0, derive=False)
    print(f"reference load: {time.perf_counter() - t0:.1f} s " + ", ".join(f"{x.layer} {x.loaded}" for x in ref.layers))
    with connect(url) as conn:
        workers = [r[0] for r in conn.execute("SELECT id FROM workers ORDER BY id")]
    if not synthetic:
        args.workers = len(workers)
    print(f"synthesising {args.events:,} events and {args.fixes:,} fixes ({args.workers} workers, {args.days} d)")
    synth_events(clean / "events.csv", args.events, rng)
    synth_fixes(clean / "gps_fixes.parquet", args.fixes, args.workers, args.days, rng)
    if not synthetic:  # map synthetic devices/workers onto the sample's
        _remap_fixes(clean / "gps_fixes.parquet", url)
    with connect(url) as conn:
        rep = load_events(conn, clean / "events.csv", Mapping())
    _rate("events", rep)
    with connect(url) as conn:
        rep = load_gps(conn, clean / "gps_fixes.parquet", Mapping(), replace=True)
    _rate("gps_fixes", rep)
    with connect(url) as conn:
        refresh_statistics(conn)
    engine = create_engine(sa_url, pool_size=2)
    last_day = (END - timedelta(days=1)).astimezone(A.LOCAL_TZ).date()
    pts = [(float(lon), float(lat)) for lon, lat in _random_lonlat(url, rng, 50)]
    it = iter(pts * (args.repeat + 1))
    cases: list[tuple[str, Callable[[], object], int]] = [
        (
            "heatmap 30 d, 100 m squares",
            lambda: A.event_density(engine, END - timedelta(days=30), END, cell="square", size_m=100),
            args.repeat,
        ),
        (
            "heatmap 30 d, grid cells",
            lambda: A.event_density(engine, END - timedelta(days=30), END),
            args.repeat,
        ),
        (
            "hotspots Gi* 30 d, 100 m",
            lambda: A.event_hotspots(engine, END - timedelta(days=30), END, size_m=100),
            max(3, args.repeat // 4),
        ),
        ("SLA by category (all events)", lambda: A.sla(engine, "category", now=END), 3),
        ("nearest 5 patrollers", lambda: A.nearest_patrollers(engine, *next(it), n=5, now=END), args.repeat),
        ("cameras that see a point", lambda: A.cameras_visible(engine, *next(it)), args.repeat),
        ("all workers' daily mileage", lambda: A.patrol_mileage(engine, last_day), 3),
        (
            "one worker's track 8 h (geojson)",
            lambda: A.patrol_track(engine, workers[0], END - timedelta(days=1), END),
            max(3, args.repeat // 2),
        ),
        ("road coverage per grid, 1 day", lambda: A.road_coverage(engine, last_day), 3),
        ("KPIs", lambda: A.kpis(engine, now=END), args.repeat),
    ]
    print(f"\n{'query':<36} {'p50 ms':>9} {'p95 ms':>9}  runs")
    for name, fn, n in cases:
        fn()  # warm
        p50, p95 = timed(fn, n)
        print(f"{name:<36} {p50:9.1f} {p95:9.1f}  {n}")
    lon, lat = pts[0]
    explain(
        sa_url,
        "30-day heatmap (btree on events.reported_at)",
        A.sql("density_square").text,
        {"start": END - timedelta(days=30), "end": END, "categories": None, "size": 100.0},
        ("Index", "Bitmap", "Seq Scan"),
    )
    explain(
        sa_url,
        "nearest patrollers (KNN on worker_positions_geom_4548_gix)",
        A.sql("nearest_patrollers").text,
        {"lon": lon, "lat": lat, "n": 5, "kind": None, "max_age_s": None, "now": END},
        ("Index", "Seq Scan", "Limit"),
    )
    explain(
        sa_url,
        "cameras that see (GiST on cameras and buildings)",
        A.sql("cameras_visible").text,
        {"lon": lon, "lat": lat, "h": 1.5, "only_online": False},
        ("Index", "Seq Scan"),
    )
    explain(
        sa_url,
        "a worker's fixes for a day (btree worker_id, t + partition pruning)",
        "SELECT count(*) FROM gps_fixes WHERE worker_id = :w AND t >= :a AND t < :b",
        {"w": workers[0], "a": END - timedelta(days=1), "b": END},
        ("Index", "Seq Scan", "Append", "gps_fixes_p"),
    )
    explain(
        sa_url,
        "all fixes of one hour (BRIN on t)",
        "SELECT count(*) FROM gps_fixes WHERE t >= :a AND t < :b",
        {"a": END - timedelta(hours=20), "b": END - timedelta(hours=19)},
        ("Bitmap", "Seq Scan", "Rows Removed", "gps_fixes_p"),
    )
    with connect(url) as conn:
        sizes = conn.execute("""SELECT relname, pg_size_pretty(pg_total_relation_size(oid)) FROM pg_class
                                 WHERE relname IN ('events', 'event_status_history', 'gps_fixes_default')
                                    OR relname LIKE 'gps_fixes_p%' ORDER BY relname""").fetchall()
    print("\nsizes: " + ", ".join(f"{n} {s}" for n, s in sizes))
    engine.dispose()
    return 0


def _rate(name: str, rep: object) -> None:
    loaded, seconds = rep.loaded, rep.seconds  # type: ignore[attr-defined]
    print(
        f"LOAD {name}: {loaded:,} rows in {seconds:.1f} s = {loaded / seconds:,.0f} rows/s "
        f"({len(rep.rejects)} rejected)"
    )  # type: ignore[attr-defined]


def _bench_database() -> str:
    """A fresh ``onemap_bench`` database in the embedded cluster, prepared like the onemap one
    (roles, ownership, PostGIS) by the cluster's superuser; the benchmark then works as
    ``onemap_owner``, the role the loaders use (the server's own roles cannot create databases)."""
    from core.settings import get_settings
    from gis import dbsecrets
    from gis.cluster import EmbeddedCluster

    cluster = EmbeddedCluster(get_settings())
    with psycopg.connect(cluster.admin_url(), autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS onemap_bench")
        c.execute("CREATE DATABASE onemap_bench")
    cluster.prepare_database("onemap_bench")
    return cluster.url("postgresql", dbsecrets.OWNER, "onemap_bench")


def _random_lonlat(url: str, rng: np.random.Generator, n: int) -> list[tuple[float, float]]:
    with connect(url) as conn:
        row = conn.execute(
            "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT ST_Extent(geom) e FROM grid_cells) x"
        ).fetchone()
    return list(zip(rng.uniform(row[0], row[2], n), rng.uniform(row[1], row[3], n), strict=True))


def _remap_fixes(path: Path, url: str) -> None:
    with connect(url) as conn:
        devices = conn.execute("SELECT id, worker_id FROM devices ORDER BY id").fetchall()
    table = pq.read_table(path)
    k = pd.Series(table.column("device_id").to_numpy()).str[1:].astype(int) % len(devices)
    table = table.set_column(0, "device_id", pa.array([devices[i][0] for i in k]))
    table = table.set_column(1, "worker_id", pa.array([devices[i][1] for i in k]))
    pq.write_table(table, path)


if __name__ == "__main__":
    raise SystemExit(main())
