"""Load and faults: a living day at scale through the public API, with PostgreSQL stopped mid-run.

    .venv/bin/python bench/bench_load.py [--minutes 10] [--devices 300] [--viewers 30]
                                         [--operators 5] [--outage-s 20] [--sample DIR] [--tiles DIR]

A throwaway embedded cluster under ``var/bench-load/`` is loaded with the seed-7 sample (the
sample's 50 workers are cloned until there are ``--devices`` workers with devices), one
``onemap serve`` process serves it, and the simulator (:mod:`api.simulate`) drives it: every
device posts 1 fix/s (uploaded in batches every 5 s), residents report, ``--operators`` operators
dispatch over the road network and the devices step their events through the lifecycle;
``--viewers`` viewer threads load tiles and features like a browser. Every minute: p50/p95/p99
per route, errors, conflicts, 503s and the server's RSS. Halfway, PostgreSQL is stopped for
``--outage-s`` seconds (``pg_ctl stop -m fast`` / start): the API must answer 503 with
Retry-After meanwhile and 2xx again within 5 s of the restart. At the end every acknowledged
write (2xx fixes, events, status changes) is looked up in the database.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
PY = sys.executable


def rss_mb(pid: int) -> float:
    """Resident set of a process and its children (uvicorn runs in the same process here)."""
    total = 0
    for p in [pid, *_children(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def _children(pid: int) -> list[int]:
    try:
        kids = [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    return kids + [g for k in kids for g in _children(k)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 300.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=5).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{url} did not come up")


def setup_database(work: Path, sample: Path, devices: int):  # noqa: ANN201 - (cluster, owner url)
    import sqlalchemy as sa

    from core.settings import DatabaseSettings
    from gis import migrate
    from gis.cluster import EmbeddedCluster
    from gis.loaders import load_sample

    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)
    cluster = EmbeddedCluster(DatabaseSettings(var_dir=work, database_url=None, pg_port=0))
    cluster.up()
    url = cluster.url()
    migrate.upgrade(url)
    engine = sa.create_engine(url)
    with engine.connect() as c:
        loaded = c.execute(sa.text("SELECT count(*) FROM workers")).scalar_one()
    if not loaded:
        print(f"loading the sample {sample} ...", flush=True)
        load_sample(sample, url=url.replace("postgresql+psycopg://", "postgresql://", 1), gps_limit=200_000)
    with engine.begin() as c:  # clones of the sample's workers until there are `devices` of them
        n = c.execute(sa.text("SELECT count(*) FROM workers")).scalar_one()
        if n < devices:
            c.execute(sa.text("""
                WITH src AS (SELECT w.*, row_number() OVER (ORDER BY w.id) - 1 AS k, count(*) OVER () AS m
                               FROM workers w WHERE w.id NOT LIKE 'WX%'),
                     ids AS (SELECT (SELECT count(*) FROM workers WHERE id LIKE 'WX%') + g AS i
                              FROM generate_series(1, :extra) g)
                INSERT INTO workers (id, name, phone, kind, grid_id)
                SELECT 'WX' || lpad(i::text, 4, '0'), s.name || '-' || i, s.phone, s.kind, s.grid_id
                  FROM ids JOIN src s ON s.k = (ids.i - 1) % s.m"""), {"extra": devices - n})
            c.execute(sa.text("""
                INSERT INTO devices (id, worker_id) SELECT 'DX' || substr(id, 3), id FROM workers w
                 WHERE id LIKE 'WX%' AND NOT EXISTS (SELECT 1 FROM devices d WHERE d.worker_id = w.id)"""))
        # every worker starts from a position near its original's (an hour ago)
        c.execute(sa.text("""
            INSERT INTO worker_positions (worker_id, device_id, t, speed, accuracy, geom)
            SELECT w.id, d.id, now() - interval '1 hour', 0, 5,
                   ST_Translate(p.geom, (random() - 0.5) * 0.002, (random() - 0.5) * 0.002)
              FROM workers w JOIN devices d ON d.worker_id = w.id
              JOIN LATERAL (SELECT geom FROM worker_positions ORDER BY worker_id LIMIT 1 OFFSET
                            (abs(hashtext(w.id)) % GREATEST(1, (SELECT count(*) FROM worker_positions)))) p ON true
             WHERE NOT EXISTS (SELECT 1 FROM worker_positions x WHERE x.worker_id = w.id)"""))
    engine.dispose()
    return cluster, url


def viewer_loop(client, token: str, tiles: list[str], bbox, stop: threading.Event, seed: int) -> None:  # noqa: ANN001
    """A browser's share of requests: tiles, events/buildings pages in a bbox, KPIs, now and then."""
    rnd = random.Random(seed)
    w, s, e, n = bbox
    while not stop.is_set():
        for path in rnd.sample(tiles, min(len(tiles), 8)):
            client.call("GET", path, "GET /tiles/{layer}/{path}", token)
        x, y = rnd.uniform(w, e - 0.004), rnd.uniform(s, n - 0.003)
        box = f"{x:.6f},{y:.6f},{x + 0.004:.6f},{y + 0.003:.6f}"
        for coll in ("buildings", "events"):
            client.call("GET", f"/collections/{coll}/items", "GET /collections/{id}/items", token,
                        params={"bbox": box, "limit": 100})
        client.call("GET", "/analytics/kpis", "GET /analytics/kpis", token)
        stop.wait(rnd.uniform(2.0, 4.0))


def tile_paths(tiles: Path | None) -> list[str]:
    if tiles is None or not tiles.is_dir():
        return []
    out = [f"/tiles/{p.relative_to(tiles).as_posix()}" for p in tiles.rglob("*")
           if p.suffix in (".glb", ".json", ".pnts", ".b3dm") and p.name != "index.json" and p.parts[-2] != "terrain"]
    random.Random(1).shuffle(out)
    return out[:400]


def report_minute(stats, pid: int, minute: int) -> None:  # noqa: ANN001
    from api.simulate.client import summarize

    rows = summarize(stats.take())
    print(f"\n--- minute {minute}: server RSS {rss_mb(pid):.0f} MB, errors so far {stats.errors()}", flush=True)
    print(f"{'route':<42} {'n':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'err':>4} {'409':>4} {'503':>4}")
    for r in rows:
        print(f"{r['route']:<42} {r['n']:>6} {r['p50']:>8.1f} {r['p95']:>8.1f} {r['p99']:>8.1f} "
              f"{r['errors']:>4} {r['conflicts']:>4} {r['unavailable']:>4}", flush=True)


def outage(cluster, stats, seconds: float, result: dict) -> None:  # noqa: ANN001
    """Stop PostgreSQL, wait, start it; measure how long until the API answers 2xx again."""
    print(f"\n*** stopping PostgreSQL for {seconds:.0f} s", flush=True)
    t_stop = time.monotonic()
    cluster.stop()
    time.sleep(seconds)
    cluster.start()
    t_up = time.monotonic()
    print(f"*** PostgreSQL started again after {t_up - t_stop:.1f} s", flush=True)
    result.update(t_stop=t_stop, t_up=t_up)
    while stats.ok_at_last <= t_up + 0.05 and time.monotonic() - t_up < 60:
        time.sleep(0.05)
    result["recovery_s"] = max(0.0, stats.ok_at_last - t_up) if stats.ok_at_last > t_up else float("inf")
    print(f"*** first 2xx {result['recovery_s']:.2f} s after the restart", flush=True)


def verify(url: str, stats) -> dict[str, int]:  # noqa: ANN001
    import psycopg

    libpq = url.replace("postgresql+psycopg://", "postgresql://", 1)
    fixes = sorted(stats.acked_fixes)
    with psycopg.connect(libpq) as c:
        c.execute("CREATE TEMP TABLE acked (device_id text, t timestamptz)")
        with c.cursor().copy("COPY acked (device_id, t) FROM STDIN") as cp:
            for row in fixes:
                cp.write_row(row)
        missing_fixes = c.execute(
            "SELECT count(*) FROM acked a WHERE NOT EXISTS "
            "(SELECT 1 FROM gps_fixes g WHERE g.device_id = a.device_id AND g.t = a.t)").fetchone()[0]
        ids = sorted(stats.acked_events)
        found = c.execute("SELECT count(*) FROM events WHERE id = ANY(%s)", (ids,)).fetchone()[0]
        changes = stats.acked_status
        hist = c.execute("SELECT count(*) FROM unnest(%s::text[], %s::text[]) AS a(id, st) WHERE EXISTS "
                         "(SELECT 1 FROM event_status_history h WHERE h.event_id = a.id AND h.to_status = a.st)",
                         ([x for x, _ in changes], [y for _, y in changes])).fetchone()[0]
    return {"fixes_acked": len(fixes), "fixes_missing": missing_fixes, "events_acked": len(ids),
            "events_missing": len(ids) - found, "status_acked": len(changes), "status_missing": len(changes) - hist}


def main() -> int:  # noqa: PLR0915 - one linear script
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--devices", type=int, default=300)
    ap.add_argument("--viewers", type=int, default=30)
    ap.add_argument("--operators", type=int, default=5)
    ap.add_argument("--outage-s", type=float, default=20.0)
    ap.add_argument("--speed", type=float, default=60.0, help="simulated seconds per real second")
    ap.add_argument("--events-per-day", type=float, default=1500.0)
    ap.add_argument("--sample", type=Path, default=REPO / "var" / "bench" / "sample-s1")
    ap.add_argument("--tiles", type=Path, default=REPO / "var" / "bench" / "tiles-s1")
    ap.add_argument("--work", type=Path, default=REPO / "var" / "bench-load")
    args = ap.parse_args()
    args.work = args.work.resolve()

    import sqlalchemy as sa

    from api.simulate import ApiClient, Simulation, SimulationConfig, Tokens, discover
    from onemap.commands.simulate import ensure_account

    if not (args.sample / "clean" / "README.txt").exists():
        subprocess.run([PY, "-m", "onemap.cli", "sample", "generate", "--out", str(args.sample), "--seed", "7"],
                       cwd=REPO, check=True)
    cluster, url = setup_database(args.work, args.sample, args.devices)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "ONEMAP_VAR_DIR": str(args.work), "ONEMAP_LOG_LEVEL": "WARNING"}
    env.pop("ONEMAP_DATABASE_URL", None)
    serve = [PY, "-m", "onemap.cli", "serve", "--port", str(port)]
    if args.tiles.is_dir():
        serve += ["--tiles", str(args.tiles)]
    log = open(args.work / "serve.log", "wb")  # noqa: SIM115
    server = subprocess.Popen(serve, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    stop = threading.Event()
    try:
        wait_http(f"{base}/conformance")
        engine = sa.create_engine(url)
        ops = [ensure_account(engine, f"load-operator-{k}", "operator") for k in range(args.operators)]
        viewers = [ensure_account(engine, f"load-viewer-{k}", "viewer") for k in range(args.viewers)]
        with ApiClient(base, max_connections=128) as client:
            world = discover(client, ops[0], max_workers=args.devices)
            resident = ensure_account(engine, "load-residents", "device", source="resident")
            devices = {w.device_id: ensure_account(engine, f"load-{w.device_id}", "device", [w.device_id])
                       for w in world.workers}
            tokens = Tokens(operators=ops, resident=resident, devices=devices)
            engine.dispose()
            client.stats.take()  # setup calls are not part of the figures
            print(f"{len(world.workers)} devices, {args.viewers} viewers, {args.operators} operators, "
                  f"{args.minutes:g} min, PostgreSQL stopped for {args.outage_s:g} s halfway; server pid {server.pid}",
                  flush=True)
            cfg = SimulationConfig(speed=args.speed, events_per_day=args.events_per_day, http_threads=32)
            sim = Simulation(client, world, tokens, cfg)
            tiles = tile_paths(args.tiles)
            threads = [threading.Thread(target=viewer_loop, args=(client, viewers[k], tiles, world.bbox, stop, k),
                                        daemon=True) for k in range(args.viewers)]
            for t in threads:
                t.start()
            t0 = time.monotonic()
            result: dict = {}
            state = {"minute": 0, "outage": None}

            def tick(_sim) -> None:  # noqa: ANN001
                el = time.monotonic() - t0
                if el >= (state["minute"] + 1) * 60:
                    state["minute"] += 1
                    report_minute(client.stats, server.pid, state["minute"])
                if state["outage"] is None and el >= args.minutes * 30 - args.outage_s / 2:
                    state["outage"] = threading.Thread(target=outage,
                                                       args=(cluster, client.stats, args.outage_s, result))
                    state["outage"].start()

            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            rss0 = rss_mb(server.pid)
            sim.run(stop, duration_s=args.minutes * 60, on_tick=tick)
            stop.set()
            for t in threads:
                t.join(30)
            if state["outage"] is not None:
                state["outage"].join()
            report_minute(client.stats, server.pid, state["minute"] + 1)
            rss1 = rss_mb(server.pid)
            time.sleep(1)
            check = verify(url, client.stats)
            t_stop, t_up = result.get("t_stop", 0), result.get("t_up", 0)
            during = [x for x in client.stats.unavailable_at if t_stop <= x <= t_up + 5]
            total = client.stats.total
            errors = sum(r.errors for r in total.values())
            n = sum(len(r.latencies_ms) for r in total.values())
            print("\n=== summary")
            print(f"requests answered 2xx/409: {n}, errors: {errors} (samples: {client.stats.error_samples[:5]})")
            print(f"server RSS: {rss0:.0f} MB at start, {rss1:.0f} MB at the end")
            print(f"outage: {len(during)} answers 503 with Retry-After while PostgreSQL was down; "
                  f"{len(client.stats.failed_at)} connection failures; "
                  f"first 2xx {result.get('recovery_s', float('nan')):.2f} s after the restart")
            print(f"simulation: {sim.counts}")
            print(f"acknowledged writes: {check['fixes_acked']} fixes ({check['fixes_missing']} missing), "
                  f"{check['events_acked']} events ({check['events_missing']} missing), "
                  f"{check['status_acked']} status changes ({check['status_missing']} missing)")
    finally:
        stop.set()
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
        cluster.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
