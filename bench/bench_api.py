"""Benchmark the API: features latency vs tipg, tile throughput vs nginx, SSE fan-out.

    .venv/bin/python bench/bench_api.py [--events 200000] [--tiles DIR] [--seconds 10]
                                        [--clients 200] [--skip-tipg] [--skip-nginx] [--skip-sse]

Everything runs on 127.0.0.1 with bounded counts and durations:

1. items with bbox: a throwaway PostGIS (``var/bench-api/pg``, or ``ONEMAP_DATABASE_URL``) gets
   ``--events`` events; the same random ~300 m bboxes (``limit=100``) are requested one after
   another from onemap and from tipg (``pip install -e '.[bench]'``), each one uvicorn worker on
   the same database; p50/p95 latency.
2. tiles: the same folder (``--tiles``, default a synthetic 500-file folder of 2–60 KB tiles)
   served by onemap (one uvicorn worker) and by Debian nginx (``worker_processes 1``,
   installed with apt-get when missing, config generated under ``var/bench-api/``); requests/s
   from the same keep-alive load generator (asyncio, 2 processes x 16 connections).
3. SSE: ``--clients`` EventSource connections to /stream; NOTIFYs are sent through PostgreSQL
   and the delivery delay to every client is measured (p50/p95/max) plus delivery completeness.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
PY = sys.executable
LON0, LAT0 = 117.375, 32.915  # south-west corner of the synthetic district (~3.7 x 2.8 km)
LON_SPAN, LAT_SPAN = 0.04, 0.025


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


class Proc:
    def __init__(self, args: list[str], env: dict[str, str] | None = None, log: Path | None = None) -> None:
        self.log = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
        self.p = subprocess.Popen(args, env={**os.environ, **(env or {})}, stdout=self.log,
                                  stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)


# -- database ---------------------------------------------------------------------------------------
def database(work: Path, n_events: int) -> str:
    import sqlalchemy as sa

    from core.settings import DatabaseSettings
    from gis import migrate
    from gis.cluster import EmbeddedCluster

    url = os.environ.get("ONEMAP_DATABASE_URL")
    if url:
        url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    else:
        work.mkdir(parents=True, exist_ok=True)
        work.chmod(0o755)
        cluster = EmbeddedCluster(DatabaseSettings(var_dir=work, database_url=None, pg_port=0))
        cluster.up()
        url = cluster.url()
    migrate.upgrade(url)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        have = conn.execute(sa.text("SELECT count(*) FROM events WHERE id LIKE 'EB%'")).scalar_one()
        if have < n_events:
            print(f"loading {n_events - have} events ...", flush=True)
            conn.execute(sa.text("SET LOCAL onemap.quiet = 'on'"))
            conn.execute(sa.text(
                "INSERT INTO communities (id, name, geom) VALUES ('CB', 'bench', ST_Multi(ST_MakeEnvelope("
                ":w, :s, :e, :n, 4490))) ON CONFLICT DO NOTHING"),
                {"w": LON0, "s": LAT0, "e": LON0 + LON_SPAN, "n": LAT0 + LAT_SPAN})
            conn.execute(sa.text(
                "INSERT INTO grid_cells (id, name, community_id, geom) VALUES ('GB', 'bench', 'CB', "
                "ST_Multi(ST_MakeEnvelope(:w, :s, :e, :n, 4490))) ON CONFLICT DO NOTHING"),
                {"w": LON0, "s": LAT0, "e": LON0 + LON_SPAN, "n": LAT0 + LAT_SPAN})
            conn.execute(sa.text(
                "INSERT INTO events (id, category, priority, source, description, grid_id, community_id, "
                "reported_at, deadline_at, geom) "
                "SELECT 'EB' || lpad(i::text, 9, '0'), "
                "(ARRAY['city_appearance','street_order','sanitation','municipal_facilities','greening',"
                "'illegal_construction','safety_hazard','dispute'])[1 + i % 8], "
                "(ARRAY['A','B','C','D'])[1 + i % 4], 'grid_worker', 'bench event ' || i, 'GB', 'CB', "
                "timestamptz '2025-01-01' + i * interval '2 minutes', "
                "timestamptz '2025-01-03' + i * interval '2 minutes', "
                "ST_SetSRID(ST_MakePoint(:lon0 + random() * :dx, :lat0 + random() * :dy), 4490) "
                "FROM generate_series(:a, :b) AS i"),
                {"a": have + 1, "b": n_events, "lon0": LON0, "lat0": LAT0, "dx": LON_SPAN, "dy": LAT_SPAN})
        conn.execute(sa.text("ANALYZE events"))
    engine.dispose()
    return url


def server_url(work: Path, owner_url: str) -> str:
    """libpq URL the onemap server under test connects with: the embedded cluster's ``onemap_api``
    role (the server refuses the owner or a superuser), or ``ONEMAP_DATABASE_URL`` as given."""
    if os.environ.get("ONEMAP_DATABASE_URL"):
        return owner_url.replace("postgresql+psycopg://", "postgresql://", 1)
    from core.settings import DatabaseSettings
    from gis import dbsecrets
    from gis.cluster import EmbeddedCluster

    return EmbeddedCluster(DatabaseSettings(var_dir=work, database_url=None)).url("postgresql", dbsecrets.API)


def bboxes(n: int, size_deg: float = 0.003, seed: int = 1) -> list[str]:
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        w = LON0 + rnd.random() * (LON_SPAN - size_deg)
        s = LAT0 + rnd.random() * (LAT_SPAN - size_deg)
        out.append(f"{w:.6f},{s:.6f},{w + size_deg:.6f},{s + size_deg:.6f}")
    return out


def latency(base: str, path: str, boxes: list[str]) -> dict[str, float]:
    import httpx

    times = []
    n_feat = []
    with httpx.Client(timeout=60) as c:
        for b in boxes[:10]:  # warm-up
            c.get(f"{base}{path}", params={"bbox": b, "limit": 100})
        for b in boxes:
            t = time.perf_counter()
            r = c.get(f"{base}{path}", params={"bbox": b, "limit": 100})
            times.append((time.perf_counter() - t) * 1000)
            r.raise_for_status()
            n_feat.append(len(r.json()["features"]))
    times.sort()
    return {"p50_ms": statistics.median(times), "p95_ms": times[int(0.95 * len(times)) - 1],
            "mean_features": statistics.mean(n_feat)}


def bench_features(url: str, work: Path, n: int, skip_tipg: bool) -> None:
    libpq = url.replace("postgresql+psycopg://", "postgresql://", 1)
    boxes = bboxes(n)
    port = free_port()
    ours = Proc([PY, "-m", "uvicorn", "api.app:create_app", "--factory", "--port", str(port),
                 "--log-level", "warning", "--no-access-log", "--timeout-keep-alive", "120"],
                env={"ONEMAP_DATABASE_URL": server_url(work, url), "ONEMAP_ANONYMOUS_COLLECTIONS": '["events"]',
                     "ONEMAP_RATE_LIMIT_PER_S": "0",  # query speed against tipg, not the rate limit
                     "ONEMAP_VAR_DIR": str(work)}, log=work / "onemap.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/conformance")
        res_ours = latency(f"http://127.0.0.1:{port}", "/collections/events/items", boxes)
    finally:
        ours.stop()
    print(f"items+bbox onemap: p50 {res_ours['p50_ms']:.1f} ms, p95 {res_ours['p95_ms']:.1f} ms "
          f"({res_ours['mean_features']:.0f} features/page avg, {n} requests)")
    if skip_tipg:
        return
    try:
        import tipg  # noqa: F401
    except ImportError:
        print("tipg not installed (pip install -e '.[bench]'): skipped")
        return
    port = free_port()
    tipg_proc = Proc([PY, "-m", "uvicorn", "tipg.main:app", "--port", str(port), "--log-level", "warning",
                      "--no-access-log"],
                     env={"DATABASE_URL": libpq, "TIPG_DB_SCHEMAS": '["public"]',
                          "TIPG_DB_TABLES": '["public.events"]'}, log=work / "tipg.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/conformance")
        res_tipg = latency(f"http://127.0.0.1:{port}", "/collections/public.events/items", boxes)
    finally:
        tipg_proc.stop()
    print(f"items+bbox tipg:   p50 {res_tipg['p50_ms']:.1f} ms, p95 {res_tipg['p95_ms']:.1f} ms "
          f"({res_tipg['mean_features']:.0f} features/page avg)")
    print(f"  onemap/tipg p50 ratio {res_ours['p50_ms'] / res_tipg['p50_ms']:.2f} (lower is faster)")


# -- tiles -------------------------------------------------------------------------------------------
def synthetic_tiles(root: Path, n: int = 500) -> list[str]:
    """URL paths of ``n`` synthetic 2-60 KB glb files written under ``root/bench``."""
    rnd = random.Random(3)
    paths = []
    for i in range(n):
        rel = f"bench/{i // 100}/{i}.glb"
        p = root / rel
        if not p.exists():
            p.parent.mkdir(parents=True, exist_ok=True)
            size = rnd.randint(2_000, 60_000)
            # half noise, half structure: compresses roughly like real glb content
            p.write_bytes(b"glTF" + rnd.randbytes(size // 2) + bytes(range(256)) * (size // 512))
        paths.append(f"/tiles/{rel}")
    return paths


def tile_paths(root: Path, limit: int = 2000) -> list[str]:
    """URL paths of the files of a ``onemap tiles build`` folder, as the API serves them:
    ``/tiles/<layer>/...`` and ``/terrain/...`` (the catalog ``index.json`` at the root is not a tile)."""
    out = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if p.is_file() and len(rel.parts) > 1 and p.suffix in (".glb", ".b3dm", ".pnts", ".json", ".terrain"):
            out.append(f"/{rel.as_posix()}" if rel.parts[0] == "terrain" else f"/tiles/{rel.as_posix()}")
            if len(out) >= limit:
                break
    return out


def nginx_conf(work: Path, root: Path, port: int) -> Path:
    conf = work / "nginx.conf"
    (work / "nginx-tmp").mkdir(parents=True, exist_ok=True)
    conf.write_text(f"""
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on; tcp_nopush on; keepalive_requests 1000000; keepalive_timeout 120s;
    open_file_cache max=10000 inactive=60s;
    client_body_temp_path {work}/nginx-tmp; proxy_temp_path {work}/nginx-tmp;
    fastcgi_temp_path {work}/nginx-tmp; uwsgi_temp_path {work}/nginx-tmp; scgi_temp_path {work}/nginx-tmp;
    types {{ model/gltf-binary glb; application/json json; application/octet-stream b3dm pnts terrain; }}
    server {{
        listen 127.0.0.1:{port};
        location /tiles/ {{ alias {root}/; etag on; }}
        location /terrain/ {{ alias {root}/terrain/; etag on; }}
    }}
}}
""")
    return conf


def _load_worker(port: int, paths: list[str], seconds: float, conns: int, out: mp.Queue) -> None:
    async def one(idx: int) -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        n, i = 0, idx
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            path = paths[i % len(paths)]
            i += 7
            writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())  # a trusted host
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head[:100])
            await reader.readexactly(length)
            n += 1
        writer.close()
        return n

    async def main() -> int:
        return sum(await asyncio.gather(*(one(k * 31) for k in range(conns))))

    out.put(asyncio.run(main()))


def warm(port: int, paths: list[str]) -> None:
    """Request every file once (fills onemap's cache / the page cache) before measuring."""
    import httpx

    with httpx.Client(timeout=120, transport=httpx.HTTPTransport(retries=3)) as c:
        for p in paths:
            for attempt in range(3):
                try:
                    c.get(f"http://127.0.0.1:{port}{p}").raise_for_status()
                    break
                except httpx.RemoteProtocolError:  # keep-alive connection closed under us
                    if attempt == 2:
                        raise


def throughput(port: int, paths: list[str], seconds: float, procs: int = 2, conns: int = 16) -> float:
    q: mp.Queue = mp.Queue()
    workers = [mp.Process(target=_load_worker, args=(port, paths, seconds, conns, q)) for _ in range(procs)]
    t = time.perf_counter()
    for w in workers:
        w.start()
    total = sum(q.get(timeout=seconds + 60) for _ in workers)
    for w in workers:
        w.join()
    return total / (time.perf_counter() - t)


def ensure_nginx() -> str | None:
    path = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if path:
        return path
    print("installing Debian nginx (apt-get) for the comparison ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "install", "-y", "-q", "nginx-light"], env=env, check=False,
                   stdout=subprocess.DEVNULL)
    if not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()):
        subprocess.run(["apt-get", "update", "-q"], env=env, check=False, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-q", "nginx"], env=env, check=False,
                       stdout=subprocess.DEVNULL)
    return shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def bench_tiles(work: Path, tiles: Path | None, seconds: float, skip_nginx: bool) -> None:
    if tiles is None:
        tiles = work / "tiles"
        paths = synthetic_tiles(tiles)
    else:
        paths = tile_paths(tiles)
    if not paths:
        raise SystemExit(f"no tiles in {tiles}")
    random.Random(5).shuffle(paths)
    port = free_port()
    ours = Proc([PY, "-m", "uvicorn", "api.app:create_app", "--factory", "--port", str(port),
                 "--log-level", "warning", "--no-access-log", "--http", "httptools", "--loop", "uvloop",
                 "--timeout-keep-alive", "120"],
                env={"ONEMAP_TILES_DIR": str(tiles), "ONEMAP_VAR_DIR": str(work),
                     "ONEMAP_DATABASE_URL": "postgresql://unused@127.0.0.1:9/none"},
                log=work / "onemap-tiles.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/tilesets")
        warm(port, paths)
        rps_ours = throughput(port, paths, seconds)
    finally:
        ours.stop()
    print(f"tiles onemap (1 worker): {rps_ours:,.0f} requests/s over {len(paths)} files")
    if skip_nginx:
        return
    nginx = ensure_nginx()
    if nginx is None:
        print("nginx not available: comparison skipped")
        return
    port = free_port()
    proc = Proc([nginx, "-c", str(nginx_conf(work, tiles.resolve(), port)), "-p", str(work)])
    try:
        wait_http(f"http://127.0.0.1:{port}{paths[0]}")
        warm(port, paths)
        rps_nginx = throughput(port, paths, seconds)
    finally:
        proc.stop()
    print(f"tiles nginx (1 worker):  {rps_nginx:,.0f} requests/s")
    print(f"  onemap = {100 * rps_ours / rps_nginx:.0f}% of nginx")


# -- SSE fan-out -------------------------------------------------------------------------------------
async def _sse_clients(
    port: int, token: str, n: int, expect: int, timeout: float
) -> tuple[list[asyncio.Task[None]], list[list[float]]]:
    """Open ``n`` streams; returns once all are connected (tasks keep reading)."""
    delays: list[list[float]] = [[] for _ in range(n)]
    connected = asyncio.Semaphore(0)

    async def client(k: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        request = f"GET /stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n\r\n"
        writer.write(request.encode())
        await reader.readuntil(b"\r\n\r\n")
        connected.release()
        buf = b""
        while len(delays[k]) < expect:
            chunk = await reader.read(65536)
            if not chunk:
                break
            buf += chunk
            while b"\n\n" in buf:
                frame, buf = buf.split(b"\n\n", 1)
                for line in frame.split(b"\n"):
                    if b'"bench_t"' in line:
                        sent = json.loads(line.split(b"data:", 1)[1].split(b"\r\n")[-1])["bench_t"]
                        delays[k].append(time.time() - sent)
        writer.close()

    tasks = [asyncio.create_task(client(k)) for k in range(n)]
    for _ in range(n):
        await asyncio.wait_for(connected.acquire(), timeout)
    return tasks, delays


def bench_sse(url: str, work: Path, n_clients: int, n_messages: int = 50) -> None:
    import psycopg
    import sqlalchemy as sa

    from api.auth import add_user

    engine = sa.create_engine(url)
    name = f"bench-{int(time.time())}"
    token = add_user(engine, name, "viewer")
    engine.dispose()
    libpq = url.replace("postgresql+psycopg://", "postgresql://", 1)
    port = free_port()
    ours = Proc([PY, "-m", "uvicorn", "api.app:create_app", "--factory", "--port", str(port),
                 "--log-level", "warning", "--no-access-log", "--timeout-keep-alive", "60"],
                env={"ONEMAP_DATABASE_URL": server_url(work, url), "ONEMAP_VAR_DIR": str(work),
                     # fan-out of one server to many screens, all on the bench's one token
                     "ONEMAP_MAX_STREAMS_PER_TOKEN": str(n_clients + 10)},
                log=work / "onemap-sse.log")

    async def run() -> list[list[float]]:
        tasks, delays = await _sse_clients(port, token, n_clients, n_messages, 60)
        await asyncio.sleep(2)  # listener connected
        with psycopg.connect(libpq, autocommit=True) as conn:
            for i in range(n_messages):
                payload = json.dumps({"type": "event", "id": f"bench{i}", "bench_t": time.time()})
                conn.execute("SELECT pg_notify('onemap', %s)", (payload,))
                await asyncio.sleep(0.02)
        try:
            await asyncio.wait_for(asyncio.gather(*tasks), 60)
        except TimeoutError:
            for t in tasks:
                t.cancel()
        return delays

    try:
        wait_http(f"http://127.0.0.1:{port}/conformance")
        delays = asyncio.run(run())
    finally:
        ours.stop()
    flat = sorted(d * 1000 for per in delays for d in per)
    got = len(flat)
    want = n_clients * n_messages
    if not flat:
        print("SSE: nothing delivered")
        return
    print(f"SSE fan-out to {n_clients} clients x {n_messages} messages: delivered {got}/{want}, "
          f"delay p50 {statistics.median(flat):.1f} ms, p95 {flat[int(0.95 * len(flat)) - 1]:.1f} ms, "
          f"max {flat[-1]:.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--tiles", type=Path, default=None)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--skip-features", action="store_true")
    ap.add_argument("--skip-tipg", action="store_true")
    ap.add_argument("--skip-tiles", action="store_true")
    ap.add_argument("--skip-nginx", action="store_true")
    ap.add_argument("--skip-sse", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep var/bench-api (cluster, tiles) for reruns")
    args = ap.parse_args()
    os.chdir(REPO)
    work = REPO / "var" / "bench-api"
    work.mkdir(parents=True, exist_ok=True)
    cluster = None
    try:
        if not args.skip_tiles:
            bench_tiles(work, args.tiles, args.seconds, args.skip_nginx)
        if not (args.skip_features and args.skip_sse):
            url = database(work, args.events)
            if not os.environ.get("ONEMAP_DATABASE_URL"):
                from core.settings import DatabaseSettings
                from gis.cluster import EmbeddedCluster

                cluster = EmbeddedCluster(DatabaseSettings(var_dir=work, database_url=None))
            if not args.skip_features:
                bench_features(url, work, args.requests, args.skip_tipg)
            if not args.skip_sse:
                bench_sse(url, work, args.clients)
    finally:
        if cluster is not None:
            cluster.stop()
        if not args.keep:
            shutil.rmtree(work / "tiles", ignore_errors=True)


if __name__ == "__main__":
    main()
