"""Helpers for the API tests: the small hand-made district (rows inserted with SQL by ``seed``),
one user per role, a tiny tiles folder (``write_tiles``), settings, a real server, a TCP proxy.

The fixtures built on them (``api_db_url``, ``tokens``, ``tiles_dir``, ``api_settings``,
``client``) live in ``tests/fixtures/api.py``, registered in ``tests/conftest.py``.
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

LON0, LAT0 = 117.390, 32.930
DAY0 = datetime(2026, 3, 2, tzinfo=UTC)
N_EVENTS = 250
CATEGORIES = ["city_appearance", "street_order", "sanitation", "municipal_facilities", "greening",
              "illegal_construction", "safety_hazard", "dispute"]
USES = ["residential", "commercial", "school", "office", "hospital"]
ROLE_USERS = {"admin": "t-admin", "operator": "t-operator", "planner": "t-planner", "viewer": "t-viewer",
              "device": "t-device"}
#: device ids each role's test account is bound to (``onemap users add --device``)
ROLE_DEVICES = {"device": ("D001", "D002", "D003", "D999")}


def box_wkt(x1: float, y1: float, x2: float, y2: float) -> str:
    """MultiPolygon WKT of a lon/lat box given in thousandths of a degree from (LON0, LAT0)."""
    a, b, c, d = LON0 + x1 / 1000, LAT0 + y1 / 1000, LON0 + x2 / 1000, LAT0 + y2 / 1000
    return f"MULTIPOLYGON((({a} {b},{c} {b},{c} {d},{a} {d},{a} {b})))"


def event_rows() -> list[dict[str, object]]:
    rows = []
    for i in range(N_EVENTS):
        rows.append({
            "id": f"E{i + 1:07d}", "category": CATEGORIES[i % len(CATEGORIES)], "priority": "ABCD"[i % 4],
            "source": ["grid_worker", "resident", "camera"][i % 3],
            "description": f"事件 {i + 1}",
            "reported_at": DAY0 + timedelta(hours=i),  # one per hour from 2026-03-02
            "lon": LON0 + (i % 20) * 0.0002 + 0.0001, "lat": LAT0 + (i // 20) * 0.0002 + 0.0001,
        })
    return rows


SEED_SQL = [
    "SET LOCAL onemap.quiet = 'on'",
    f"INSERT INTO communities (id, name, geom) VALUES "
    f"('C01', '一社区', ST_GeomFromText('{box_wkt(0, 0, 2, 4)}', 4490)),"
    f"('C02', '二社区', ST_GeomFromText('{box_wkt(2, 0, 4, 4)}', 4490))",
    f"INSERT INTO grid_cells (id, name, community_id, staff_id, staff_name, staff_phone, geom) VALUES "
    f"('G001', '网格1', 'C01', 'W001', '张三', '13800000001', "
    f"ST_GeomFromText('{box_wkt(0, 0, 2, 2)}', 4490)),"
    f"('G002', '网格2', 'C02', 'W002', '李四', '13800000002', "
    f"ST_GeomFromText('{box_wkt(2, 0, 4, 2)}', 4490)),"
    f"('G003', '网格3', 'C01', NULL, NULL, NULL, ST_GeomFromText('{box_wkt(0, 2, 2, 4)}', 4490)),"
    f"('G004', '网格4', 'C02', 'W003', '王五', '13800000003', "
    f"ST_GeomFromText('{box_wkt(2, 2, 4, 4)}', 4490))",
]


def _building_sql() -> str:
    vals = []
    for i in range(20):
        x, y = (i % 5) * 0.8 + 0.1, (i // 5) * 0.9 + 0.1
        vals.append(
            f"('B{i + 1:06d}', '楼{i + 1}', {3 + i}, {10.0 + 3 * i}, '{USES[i % len(USES)]}', 'flat', "
            f"ST_GeomFromText('{box_wkt(x, y, x + 0.5, y + 0.5)}', 4490))"
        )
    return "INSERT INTO buildings (id, name, floors, height, use, roof_type, geom) VALUES " + ",".join(vals)


def seed(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        for stmt in SEED_SQL:
            conn.execute(sa.text(stmt))
        conn.execute(sa.text(_building_sql()))
        conn.execute(sa.text(
            "UPDATE buildings b SET grid_id = g.id, community_id = g.community_id FROM grid_cells g "
            "WHERE ST_Intersects(g.geom, ST_Centroid(b.geom))"))
        conn.execute(sa.text(
            "INSERT INTO workers (id, name, phone, kind, grid_id) VALUES "
            "('W001', '张三', '13800000001', 'grid_worker', 'G001'),"
            "('W002', '李四', '13800000002', 'grid_worker', 'G002'),"
            "('W003', '车1', NULL, 'vehicle', 'G004')"))
        conn.execute(sa.text(
            "INSERT INTO devices (id, worker_id) VALUES "
            "('D001', 'W001'), ('D002', 'W002'), ('D003', 'W003')"))
        for i in range(5):
            conn.execute(sa.text(
                "INSERT INTO cameras (id, name, kind, mount_height, heading, pitch, hfov, range_m,"
                " stream_url, status, geom) VALUES (:id, :name, :kind, 6, :heading, -20, 60, 80, :url,"
                " :status, ST_SetSRID(ST_MakePoint(:lon, :lat), 4490))"),
                {"id": f"CAM{i + 1:04d}", "name": f"摄像头{i + 1}",
                 "kind": "high_altitude" if i == 0 else "street",
                 "heading": (i * 70) % 360, "url": f"/media/cam{i + 1}.mp4",
                 "status": "offline" if i == 4 else "online",
                 "lon": LON0 + 0.0005 + i * 0.0007, "lat": LAT0 + 0.0005 + i * 0.0006})
        conn.execute(sa.text(
            "INSERT INTO checkpoints (id, name, grid_id, radius_m, geom) VALUES "
            "('CP001', '点1', 'G001', 30, ST_SetSRID(ST_MakePoint(:a, :b), 4490))"),
            {"a": LON0 + 0.001, "b": LAT0 + 0.001})
        conn.execute(sa.text(
            f"INSERT INTO geofences (id, name, kind, worker_id, max_dwell_min, geom) VALUES "
            f"('GF001', '禁停区', 'no_parking', NULL, 10, "
            f"ST_GeomFromText('{box_wkt(1, 1, 1.5, 1.5)}', 4490)),"
            f"('GF002', '巡查区', 'patrol_area', 'W001', NULL, "
            f"ST_GeomFromText('{box_wkt(0, 0, 2, 2)}', 4490))"))
        conn.execute(sa.text(
            "INSERT INTO events (id, category, priority, source, description, reported_at, geom) "
            "SELECT id, category, priority, source, description, reported_at, "
            "ST_SetSRID(ST_MakePoint(lon, lat), 4490) FROM json_to_recordset(CAST(:rows AS json)) AS r("
            "id text, category text, priority text, source text, description text, reported_at timestamptz,"
            " lon float8, lat float8)"),
            {"rows": json.dumps(event_rows(), default=str)})
        # persons: 12 in B000001, 3 in B000002 (suppressed below 5)
        persons = [(f"P{i:07d}", "B000001", 1950 + i * 5, "registered" if i % 2 else "floating")
                   for i in range(12)]
        persons += [(f"P{100 + i:07d}", "B000002", 1990, "registered") for i in range(3)]
        for pid, bid, by, res in persons:
            conn.execute(sa.text(
                "INSERT INTO restricted.persons (person_id, building_id, birth_year, residence) "
                "VALUES (:p, :b, :y, :r)"), {"p": pid, "b": bid, "y": by, "r": res})
        conn.execute(sa.text(
            "INSERT INTO shift_tracks (worker_id, day, shift_start, shift_end, n_fixes, n_spikes, n_jitter,"
            " length_m, geom) VALUES ('W001', '2026-03-02', :s, :e, 100, 0, 3, 1234.5,"
            " ST_GeomFromText(:g, 4490))"),
            {"s": DAY0, "e": DAY0 + timedelta(hours=8),
             "g": f"MULTILINESTRING(({LON0 + 0.0001} {LAT0 + 0.0001},{LON0 + 0.001} {LAT0 + 0.001}))"})


def write_tiles(root: Path) -> None:
    (root / "buildings").mkdir(parents=True, exist_ok=True)
    tileset = {"asset": {"version": "1.1"}, "geometricError": 100,
               "root": {"boundingVolume": {"region": [2.0487, 0.5747, 2.0489, 0.5749, 0, 80]},
                        "geometricError": 10, "refine": "REPLACE", "content": {"uri": "0/0.glb"}}}
    (root / "buildings" / "tileset.json").write_text(json.dumps(tileset, indent=2) * 1)
    (root / "buildings" / "0").mkdir(exist_ok=True)
    glb = b"glTF" + bytes(range(256)) * 40  # compressible enough, 10 KB
    (root / "buildings" / "0" / "0.glb").write_bytes(glb)
    (root / "buildings" / "0" / "1.b3dm").write_bytes(b"b3dm" + b"\x00" * 3000)
    (root / "trees").mkdir(exist_ok=True)
    (root / "trees" / "tileset.json").write_text(json.dumps(tileset))
    (root / "trees" / "a.pnts").write_bytes(b"pnts" + b"\x01" * 100)
    terrain = root / "terrain"
    (terrain / "0" / "0").mkdir(parents=True, exist_ok=True)
    (terrain / "layer.json").write_text(json.dumps({
        "tilejson": "2.1.0", "format": "quantized-mesh-1.0", "version": "1.0.0", "scheme": "tms",
        "tiles": ["{z}/{x}/{y}.terrain?v={version}"], "projection": "EPSG:4326",
        "available": [[{"startX": 0, "startY": 0, "endX": 1, "endY": 0}]]}))
    (terrain / "0" / "0" / "0.terrain").write_bytes(gzip.compress(b"\x00quantized" * 200))
    (terrain / "0" / "1").mkdir(exist_ok=True)
    (terrain / "0" / "1" / "0.terrain").write_bytes(b"\x00raw-mesh" * 50)  # not compressed
    (root / "index.json").write_text(json.dumps({
        "layers": [{"name": "buildings", "url": "/tiles/buildings/tileset.json", "features": 20,
                    "bytes": 10000,
                    "region": [2.0487, 0.5747, 2.0489, 0.5749, 0, 80]}],
        "terrain": {"url": "/terrain"}}))


def make_settings(db_url: str, tiles: Path, **overrides: object):  # noqa: ANN201
    from core.settings import Settings
    from tests.db_support import API_URLS

    values: dict[str, object] = dict(
        database_url=db_url, tiles_dir=tiles, var_dir=tiles.parent, auth_cache_s=0.0,
        sse_heartbeat_s=1.0, db_retry_after_s=3, api_connect_timeout_s=15,
    )
    # the app connects as onemap_api; a database without one (an external test server, the
    # unreachable URLs of outage tests) is accepted as it is
    if db_url in API_URLS:
        values["api_database_url"] = API_URLS[db_url]
    else:
        values["allow_privileged_db_user"] = True
    values.update(overrides)
    return Settings(**values)


def auth(tokens: dict[str, str], role: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens[role]}"} if role else {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_server(settings, port: int | None = None, wrap=None) -> Iterator[str]:  # noqa: ANN001
    """A real uvicorn on 127.0.0.1 in a thread; yields its base URL. ``wrap(app)`` may wrap the
    ASGI app (e.g. to count requests)."""
    import uvicorn

    from api.app import create_app

    port = port or free_port()
    app = create_app(settings)
    config = uvicorn.Config(wrap(app) if wrap else app, host="127.0.0.1", port=port, log_level="warning",
                            lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 300  # a loaded 2-core machine can take minutes to import + start
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


class TcpProxy:
    """A TCP forwarder 127.0.0.1:port → 127.0.0.1:target that can be "unplugged": ``stop()``
    closes the listener and cuts every open connection (what clients see when PostgreSQL
    goes away), ``start()`` listens again on the same port."""

    def __init__(self, target_port: int, port: int | None = None) -> None:
        self.target_port = target_port
        self.port = port or free_port()
        self._server: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", self.port))
        srv.listen(64)
        self._server = srv
        threading.Thread(target=self._accept, args=(srv,), daemon=True).start()

    def _accept(self, srv: socket.socket) -> None:
        while True:
            try:
                client, _ = srv.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


def proxied_url(db_url: str, proxy: TcpProxy) -> str:
    url = sa.engine.make_url(db_url)
    return url.set(host="127.0.0.1", port=proxy.port).render_as_string(False)


def db_port(db_url: str) -> int:
    return int(sa.engine.make_url(db_url).port or 5432)
