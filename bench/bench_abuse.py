"""An API abuse cannot stop (issue 17): 32 parallel requests of the heaviest allowed analytics
while /collections/buildings/items keeps being asked; prints the status counts (0 5xx expected)
and the items latency p50/p95 during the storm (goal: p95 under 1 s).

    .venv/bin/python bench/bench_abuse.py [--events 200000] [--parallel 32] [--tokens 8]

The database is a throwaway cluster like bench_api's (``var/bench-abuse``, or ``ONEMAP_DATABASE_URL``)
with ``--events`` events over ~3.7 x 2.8 km. "Heaviest allowed" = over the longest window
(3,650 days) the smallest hexagon size the cost budget accepts (``ONEMAP_ANALYTICS_MAX_COST``,
found by asking: the refusals are 400 with the parameter to widen). The parallel requests are
spread over ``--tokens`` viewer tokens (one token alone is held to ``analytics_per_token``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_api import PY, Proc, database, free_port, wait_http  # noqa: E402

WINDOW = {"start": "2016-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--parallel", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=8)
    args = ap.parse_args()
    import httpx
    import sqlalchemy as sa

    from gis import accounts

    os.chdir(REPO)
    work = REPO / "var" / "bench-abuse"
    url = database(work, args.events)
    engine = sa.create_engine(url)
    stamp = int(time.time())
    tokens = [accounts.add_user(engine, f"bench-abuse-{stamp}-{i}", "viewer") for i in range(args.tokens)]
    engine.dispose()
    libpq = url.replace("postgresql+psycopg://", "postgresql://", 1)
    port = free_port()
    server = Proc([PY, "-m", "uvicorn", "api.app:create_app", "--factory", "--port", str(port),
                   "--log-level", "warning", "--no-access-log"],
                  env={"ONEMAP_DATABASE_URL": libpq, "ONEMAP_VAR_DIR": str(work),
                       "ONEMAP_ALLOW_PRIVILEGED_DB_USER": "true", "ONEMAP_RATE_LIMIT_PER_S": "0"},
                  log=work / "onemap-abuse.log")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/conformance")
        client = httpx.Client(base_url=base, timeout=120)
        auth = [{"Authorization": f"Bearer {t}"} for t in tokens]
        size = None
        for s in (20, 30, 50, 75, 100, 150, 250, 500, 1000, 2500, 5000):
            r = client.get("/analytics/events/density", params={"cell": "hex", "size": s, **WINDOW}, headers=auth[0])
            if r.status_code == 200:
                size = s
                break
            print(f"hex size={s} over 3650 days: {r.status_code} {r.json().get('detail', '')[:140]}")
        if size is None:
            raise SystemExit("no hexagon size is allowed over the window")
        params = {"cell": "hex", "size": size, **WINDOW}
        t0 = time.perf_counter()
        r = client.get("/analytics/events/density", params=params, headers=auth[0])
        single = time.perf_counter() - t0
        print(f"heaviest allowed: density cell=hex size={size} m over 3650 days, alone {single:.2f} s "
              f"(status {r.status_code}, {len(r.json().get('features', []))} cells)")

        done = threading.Event()
        light: list[float] = []
        light_status: Counter[int] = Counter()

        def poll_items() -> None:
            with httpx.Client(base_url=base, timeout=60) as c:
                while not done.is_set():
                    t = time.perf_counter()
                    st = c.get("/collections/buildings/items", params={"limit": 100}).status_code
                    light.append(time.perf_counter() - t)
                    light_status[st] += 1
                    time.sleep(0.05)

        def heavy(i: int) -> int:
            with httpx.Client(base_url=base, timeout=300) as c:
                return c.get("/analytics/events/density", params=params, headers=auth[i % len(auth)]).status_code

        poller = threading.Thread(target=poll_items)
        poller.start()
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.parallel) as pool:
            statuses = Counter(pool.map(heavy, range(args.parallel)))
        storm = time.perf_counter() - t0
        done.set()
        poller.join()
        five = sum(n for st, n in statuses.items() if st >= 500)
        q = statistics.quantiles(light, n=20) if len(light) >= 2 else [light[0]] * 19
        print(f"{args.parallel} parallel: statuses {dict(sorted(statuses.items()))}, 5xx: {five}, "
              f"storm {storm:.1f} s")
        print(f"/collections/buildings/items during the storm: {len(light)} requests "
              f"{dict(light_status)}, p50 {statistics.median(light) * 1000:.0f} ms, p95 {q[18] * 1000:.0f} ms")
    finally:
        server.stop()
        if not os.environ.get("ONEMAP_DATABASE_URL"):
            from core.settings import DatabaseSettings
            from gis.cluster import EmbeddedCluster

            EmbeddedCluster(DatabaseSettings(var_dir=work, database_url=None)).stop()


if __name__ == "__main__":
    main()
