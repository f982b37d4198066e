"""Live stream over a real uvicorn server, and robustness: PostGIS down → 503 + Retry-After,
then recovery by itself (pool and LISTEN) when it comes back. The database is "unplugged" with a
TCP proxy between the API and the session cluster (every connection is cut, new ones refused)."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.api_support import LAT0, LON0, TcpProxy, auth, db_port, make_settings, proxied_url, running_server


class SSE:
    """Reads an SSE response in a thread; frames arrive on a queue as dicts."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.frames: queue.Queue[dict[str, str]] = queue.Queue()
        self.status: int | None = None
        self._ready = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, args=(url, headers), daemon=True)
        self._thread.start()
        assert self._ready.wait(30), "no response from /stream"

    def _run(self, url: str, headers: dict[str, str]) -> None:
        try:
            with httpx.Client(timeout=httpx.Timeout(30.0)) as c, c.stream("GET", url, headers=headers) as r:
                self.status = r.status_code
                self.headers = r.headers
                self._ready.set()
                frame: dict[str, str] = {}
                for line in r.iter_lines():
                    if self._stop:
                        return
                    if line == "":
                        if frame:
                            self.frames.put(frame)
                        frame = {}
                    elif line.startswith(":"):
                        frame.setdefault("comment", line[1:].strip())
                    else:
                        key, _, value = line.partition(":")
                        frame[key] = frame.get(key, "") + value.lstrip()
        except Exception as exc:  # noqa: BLE001 - end of stream
            self.frames.put({"closed": str(exc)})
        finally:
            self._ready.set()

    def wait_for(self, pred, timeout: float = 60.0) -> dict[str, str]:  # noqa: ANN001
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            try:
                frame = self.frames.get(timeout=1)
            except queue.Empty:
                continue
            seen.append(frame)
            if pred(frame):
                return frame
        raise AssertionError(f"no matching frame within {timeout}s; saw {seen[-10:]}")

    def close(self) -> None:
        self._stop = True


@pytest.fixture(scope="module")
def live(api_db_url, tiles_dir, tokens) -> Iterator[tuple[str, TcpProxy]]:
    proxy = TcpProxy(db_port(api_db_url))
    proxy.start()
    settings = make_settings(
        proxied_url(api_db_url, proxy),
        tiles_dir,
        sse_heartbeat_s=1.0,
        sse_reconnect_min_s=0.2,
        sse_reconnect_max_s=1.0,
        api_pool_timeout_s=3,
    )
    with running_server(settings) as base:
        yield base, proxy
    proxy.stop()


def test_stream_auth(live, tokens) -> None:
    base, _ = live
    assert httpx.get(f"{base}/stream", timeout=10).status_code == 401
    assert httpx.get(f"{base}/stream", headers=auth(tokens, "device"), timeout=10).status_code == 403
    for role in ("admin", "operator", "planner", "viewer"):
        s = SSE(f"{base}/stream", auth(tokens, role))
        assert s.status == 200 and s.headers["content-type"].startswith("text/event-stream")
        s.close()
    s = SSE(f"{base}/stream?access_token={tokens['viewer']}", {})  # EventSource cannot send headers
    assert s.status == 200
    s.close()


def test_stream_events_positions_heartbeat_resume(live, tokens) -> None:
    base, _ = live
    viewer = SSE(f"{base}/stream", auth(tokens, "viewer"))
    planner = SSE(f"{base}/stream", auth(tokens, "planner"))
    viewer.wait_for(lambda f: f.get("comment") == "connected")
    viewer.wait_for(lambda f: f.get("event") == "heartbeat", timeout=20)
    h = auth(tokens, "operator")
    eid = httpx.post(
        f"{base}/events",
        json={"category": "dispute", "lon": LON0 + 0.0002, "lat": LAT0 + 0.0002},
        headers=h,
        timeout=30,
    ).json()["id"]
    first = viewer.wait_for(lambda f: f.get("event") == "event" and eid in f.get("data", ""))
    assert (
        httpx.patch(f"{base}/events/{eid}", json={"status": "accepted"}, headers=h, timeout=30).status_code
        == 200
    )
    second = viewer.wait_for(lambda f: f.get("event") == "event_status" and eid in f.get("data", ""))
    assert int(second["id"]) > int(first["id"])
    t = (datetime.now(UTC) - timedelta(seconds=30)).isoformat()
    r = httpx.post(
        f"{base}/gps/fixes",
        json=[{"device_id": "D002", "t": t, "lon": LON0 + 0.003, "lat": LAT0}],
        headers=auth(tokens, "device"),
        timeout=30,
    )
    assert r.json()["accepted"] == 1
    pos = viewer.wait_for(lambda f: f.get("event") == "position" and "W002" in f.get("data", ""))
    assert int(pos["id"]) > int(second["id"])
    # the planner gets events but not positions
    planner.wait_for(lambda f: f.get("event") == "event_status" and eid in f.get("data", ""))
    time.sleep(1.5)
    leftovers = []
    while not planner.frames.empty():
        leftovers.append(planner.frames.get())
    assert not any(f.get("event") == "position" for f in leftovers)
    viewer.close()
    planner.close()
    # resume: everything after the first message is replayed, in order
    again = SSE(f"{base}/stream", {**auth(tokens, "viewer"), "Last-Event-ID": first["id"]})
    replay1 = again.wait_for(lambda f: "id" in f)
    replay2 = again.wait_for(lambda f: "id" in f)
    assert (replay1["id"], replay2["id"]) == (second["id"], pos["id"])
    again.close()


def test_db_down_503_then_recovery(live, tokens) -> None:
    base, proxy = live
    h = auth(tokens, "viewer")
    assert httpx.get(f"{base}/collections/events/items?limit=1", headers=h, timeout=30).status_code == 200
    stream = SSE(f"{base}/stream", h)
    stream.wait_for(lambda f: f.get("comment") == "connected")
    proxy.stop()
    try:
        r = httpx.get(
            f"{base}/collections/events/items?limit=1", headers=auth(tokens, "operator"), timeout=60
        )
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] == "3"
        assert r.json() == {"detail": "database unavailable, retry later", "status": 503}
        # tiles keep working without the database
        assert httpx.get(f"{base}/tiles/buildings/tileset.json", timeout=30).status_code == 200
    finally:
        proxy.start()
    deadline = time.monotonic() + 60
    while True:
        r = httpx.get(f"{base}/collections/events/items?limit=1", headers=h, timeout=60)
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert r.status_code == 200
    # the live listener reconnected by itself and tells clients to resync
    stream.wait_for(lambda f: f.get("event") == "resync", timeout=60)
    eid = httpx.post(
        f"{base}/events",
        json={"category": "greening", "lon": LON0, "lat": LAT0},
        headers=auth(tokens, "operator"),
        timeout=30,
    ).json()["id"]
    stream.wait_for(lambda f: f.get("event") == "event" and eid in f.get("data", ""))
    stream.close()


def test_unreachable_database_is_503_not_500(tiles_dir) -> None:
    from api.app import create_app

    settings = make_settings("postgresql://postgres@127.0.0.1:9/none", tiles_dir, db_retry_after_s=7)
    with TestClient(create_app(settings)) as c:
        for path in ("/collections", "/collections/buildings/items", "/analytics/kpis"):
            r = c.get(path, headers={"Authorization": "Bearer om_x"} if "analytics" in path else {})
            assert r.status_code == 503, (path, r.text)
            assert r.headers["retry-after"] == "7" and "Traceback" not in r.text
        assert c.get("/tilesets").status_code == 200
        assert c.get("/conformance").status_code == 200


def test_broker_replay_and_overflow() -> None:
    import asyncio

    from api.live import Broker

    async def main() -> None:
        b = Broker(lambda: "postgresql://unused", ring_size=5, client_queue=3)
        live = [b._publish_raw("event", f'{{"type": "event", "stream_id": {i}}}', i) for i in (10, 11)]
        assert [m.id for m in live] == [10, 11] and b.last_id == 11
        c = b.subscribe({"event"})
        b._publish_raw("event", '{"type": "event", "stream_id": 13}', 13)  # arrives while replaying
        # stored rows after 10, read from the database after subscribing: 11, 12, 13
        b.replay(c, 10, [(i, "event", f'{{"stream_id": {i}}}') for i in (11, 12, 13)], oldest_id=1)
        assert [c.queue.get_nowait().id for _ in range(3)] == [11, 12, 13] and c.queue.empty()
        old = b.subscribe({"event"})
        b.replay(old, 0, [(5, "event", "{}")], oldest_id=5)  # 1..4 were pruned
        assert old.queue.get_nowait().type == "resync" and old.queue.get_nowait().id == 5
        many = b.subscribe({"event"})
        b.replay(many, 0, None, oldest_id=1)  # more than the replay limit waiting
        assert many.queue.get_nowait().type == "resync"
        slow = b.subscribe({"event"})
        for i in range(5):
            b._publish_raw("event", "{}", 20 + i)
        assert slow.overflowed  # will be disconnected and resume from the database
        pos_only = b.subscribe({"position"})
        b._publish_raw("event", "{}", 30)
        assert pos_only.queue.empty()

    asyncio.run(main())
