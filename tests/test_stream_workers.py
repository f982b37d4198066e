"""The live stream across processes: `onemap serve --workers 2` as a real subprocess; a client
that disconnects and reconnects with Last-Event-ID (to whichever worker process accepts it) gets
every message it missed, from the database, in order, with no gap and no duplicate."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.api_support import LAT0, LON0, auth, free_port
from tests.db_support import API_URLS
from tests.gis_helpers import libpq

ONEMAP = Path(sys.executable).with_name("onemap")


def _read_frames(url: str, headers: dict[str, str], want: int, timeout: float = 60) -> list[dict[str, str]]:
    """The first ``want`` frames with an id (heartbeats and comments skipped)."""
    frames: list[dict[str, str]] = []
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=httpx.Timeout(timeout)) as c, c.stream("GET", url, headers=headers) as r:
        assert r.status_code == 200
        frame: dict[str, str] = {}
        for line in r.iter_lines():
            if line == "":
                if "id" in frame or frame.get("event") == "resync":
                    frames.append(frame)
                    if len(frames) >= want:
                        return frames
                frame = {}
            elif not line.startswith(":"):
                key, _, value = line.partition(":")
                frame[key] = frame.get(key, "") + value.lstrip()
            if time.monotonic() > deadline:
                break
    raise AssertionError(f"only {len(frames)} of {want} frames: {frames}")


@pytest.fixture(scope="module")
def two_workers(api_db_url: str, tiles_dir: Path, tokens) -> Iterator[str]:  # noqa: ANN001
    port = free_port()
    env = {**os.environ, "ONEMAP_DATABASE_URL": api_db_url, "ONEMAP_API_DATABASE_URL": API_URLS[api_db_url],
           "ONEMAP_VAR_DIR": str(tiles_dir.parent), "ONEMAP_SSE_HEARTBEAT_S": "1", "ONEMAP_AUTH_CACHE_S": "0"}
    proc = subprocess.Popen([str(ONEMAP), "serve", "--workers", "2", "--port", str(port), "--tiles", str(tiles_dir)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    try:
        while True:
            try:
                if httpx.get(f"{base}/collections", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"onemap serve did not start: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()  # the supervisor stops its workers
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _stored_ids(api_db_url: str, after: int, types: tuple[str, ...]) -> list[int]:
    with psycopg.connect(libpq(api_db_url)) as c:
        return [r[0] for r in c.execute("SELECT id FROM stream_messages WHERE id > %s AND type = ANY(%s) ORDER BY id",
                                        (after, list(types)))]


def test_replay_across_two_worker_processes(two_workers: str, api_db_url: str, tokens) -> None:  # noqa: ANN001
    base = two_workers
    viewer, operator = auth(tokens, "viewer"), auth(tokens, "operator")
    got: list[list[dict[str, str]]] = []
    reader = threading.Thread(target=lambda: got.append(_read_frames(f"{base}/stream", viewer, 1)), daemon=True)
    reader.start()
    time.sleep(2)  # connected before the first write
    posted = []
    for i in range(3):
        r = httpx.post(f"{base}/events", json={"category": "dispute", "lon": LON0 + 0.0001 * i, "lat": LAT0},
                       headers=operator, timeout=30)
        assert r.status_code == 201, r.text
        posted.append(r.json()["id"])
    reader.join(60)
    first = got[0][0]
    assert first["event"] == "event" and posted[0] in first["data"]
    # disconnected: more writes land in either process
    for eid in posted:
        assert httpx.patch(f"{base}/events/{eid}", json={"status": "accepted"}, headers=operator,
                           timeout=30).status_code == 200
    expected = _stored_ids(api_db_url, int(first["id"]), ("event", "event_status", "alarm", "position"))
    assert len(expected) >= 5  # 2 more events + 3 status changes
    # several reconnects: the kernel spreads them over both worker processes; each replays all
    for _ in range(6):
        frames = _read_frames(f"{base}/stream", {**viewer, "Last-Event-ID": first["id"]}, len(expected))
        assert [int(f["id"]) for f in frames] == expected
        assert all(f["event"] != "resync" for f in frames)
