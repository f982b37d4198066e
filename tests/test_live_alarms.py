"""Live alarms: fixes evaluated as they arrive (trigger on gps_fixes + per-worker state in
alarm_live_state), written to alarms, NOTIFY'd and on the SSE stream within 2 s of the POST;
a server restart between batches loses no alarm and raises none twice."""

from __future__ import annotations

import queue
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest

from tests import gis_world as W
from tests.api_support import LAT0, LON0, auth, make_settings, running_server
from tests.gis_helpers import libpq

INSIDE = (LON0 + 0.001, LAT0 + 0.001)  # in W001's patrol area GF002 (0..0.002 deg)
OUTSIDE = (LON0 + 0.004, LAT0 + 0.001)  # ~190 m east of it


def _fix(device: str, t: datetime, lonlat: tuple[float, float], **kw: object) -> dict[str, object]:
    return {"device_id": device, "t": t.isoformat(), "lon": lonlat[0], "lat": lonlat[1], **kw}


def _alarms(url: str, kind: str, worker: str) -> list[tuple]:
    with psycopg.connect(libpq(url)) as c:
        return c.execute("SELECT id, t_start, t_end FROM alarms WHERE kind = %s AND worker_id = %s ORDER BY id",
                         (kind, worker)).fetchall()


class _Stream:
    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.frames: queue.Queue[tuple[float, dict[str, str]]] = queue.Queue()
        self.ready = threading.Event()
        threading.Thread(target=self._run, args=(url, headers), daemon=True).start()
        assert self.ready.wait(30)

    def _run(self, url: str, headers: dict[str, str]) -> None:
        with httpx.Client(timeout=60) as c, c.stream("GET", url, headers=headers) as r:
            frame: dict[str, str] = {}
            for line in r.iter_lines():
                if line.startswith(": connected"):
                    self.ready.set()
                if line == "":
                    if frame:
                        self.frames.put((time.monotonic(), frame))
                    frame = {}
                elif not line.startswith(":"):
                    key, _, value = line.partition(":")
                    frame[key] = frame.get(key, "") + value.lstrip()

    def first(self, event: str, timeout: float) -> tuple[float, dict[str, str]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                at, frame = self.frames.get(timeout=0.2)
            except queue.Empty:
                continue
            if frame.get("event") == event:
                return at, frame
        raise AssertionError(f"no {event} frame within {timeout}s")


def test_alarm_live_across_a_restart(api_db_url, tiles_dir, tokens) -> None:  # noqa: ANN001
    settings = make_settings(api_db_url, tiles_dir, sse_heartbeat_s=1.0)
    device = auth(tokens, "device")
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    first = [_fix("D001", t0, INSIDE)] + [_fix("D001", t0 + timedelta(seconds=s), OUTSIDE) for s in (10, 30, 50)]
    with running_server(settings) as base:
        r = httpx.post(f"{base}/gps/fixes", json=first, headers=device, timeout=30)
        assert r.json() == {"accepted": 4, "rejected": []}
    assert _alarms(api_db_url, "left_patrol_area", "W001") == []  # outside 40 s < 60 s: not yet
    # the server is down: nothing evaluates anything; then a new server process starts
    with running_server(settings) as base:
        stream = _Stream(f"{base}/stream", auth(tokens, "operator"))
        r = httpx.post(f"{base}/gps/fixes", json=[_fix("D001", t0 + timedelta(seconds=70), OUTSIDE)],
                       headers=device, timeout=30)
        posted = time.monotonic()
        assert r.json()["accepted"] == 1
        at, frame = stream.first("alarm", timeout=30)
        assert at - posted < 2.0, f"alarm on the stream {at - posted:.2f}s after the POST"
        assert '"left_patrol_area"' in frame["data"] and '"W001"' in frame["data"] and int(frame["id"]) > 0
        # the same batch again (duplicates), then more fixes of the same episode: no new alarm
        again = httpx.post(f"{base}/gps/fixes", json=first, headers=device, timeout=30).json()
        assert again["accepted"] == 0 and len(again["rejected"]) == 4
        httpx.post(f"{base}/gps/fixes", json=[_fix("D001", t0 + timedelta(seconds=90), OUTSIDE)],
                   headers=device, timeout=30)
    rows = _alarms(api_db_url, "left_patrol_area", "W001")
    assert len(rows) == 1
    assert rows[0][1] == t0 + timedelta(seconds=10) and rows[0][2] == t0 + timedelta(seconds=90)
    # back inside, then out again for 60 s: a second episode, a second alarm
    with running_server(settings) as base:
        batch = [_fix("D001", t0 + timedelta(seconds=100), INSIDE)]
        batch += [_fix("D001", t0 + timedelta(seconds=s), OUTSIDE) for s in (110, 140, 170)]
        assert httpx.post(f"{base}/gps/fixes", json=batch, headers=device, timeout=30).json()["accepted"] == 4
    assert [r[1] for r in _alarms(api_db_url, "left_patrol_area", "W001")] == [
        t0 + timedelta(seconds=10), t0 + timedelta(seconds=110)]


def test_sos_through_the_api(api_db_url, tiles_dir, tokens) -> None:  # noqa: ANN001
    from fastapi.testclient import TestClient

    from api.app import create_app

    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    with TestClient(create_app(make_settings(api_db_url, tiles_dir))) as c:
        body = [_fix("D002", t0, INSIDE), _fix("D002", t0 + timedelta(seconds=5), INSIDE, sos=True),
                _fix("D002", t0 + timedelta(seconds=10), INSIDE, sos=True)]
        assert c.post("/gps/fixes", json=body, headers=auth(tokens, "device")).json()["accepted"] == 3
        assert c.post("/gps/fixes", json=[_fix("D002", t0 + timedelta(seconds=15), INSIDE, sos="maybe")],
                      headers=auth(tokens, "device")).json()["accepted"] == 0
    rows = _alarms(api_db_url, "sos", "W002")
    assert [r[1:] for r in rows] == [(t0 + timedelta(seconds=5), t0 + timedelta(seconds=10))]


# -- each rule on the tiny district (direct inserts, rolled back) ----------------------------------
INSERT = """INSERT INTO gps_fixes (device_id, worker_id, t, speed, sos, geom)
            SELECT d, w, t, s, sos, ST_Transform(ST_SetSRID(ST_MakePoint(x, y), 4548), 4490)
              FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::real[], %s::boolean[],
                          %s::float8[], %s::float8[]) AS u(d, w, t, s, sos, x, y)"""
T0 = datetime(2026, 3, 9, 2, 0, tzinfo=UTC)


def _insert(c: psycopg.Connection, device: str, worker: str, track: list[tuple[float, float, float]],
            speed: float | None = None, sos: bool = False) -> None:
    """``track``: (seconds after T0, x, y) in the tiny district's local metres."""
    n = len(track)
    c.execute(INSERT, ([device] * n, [worker] * n, [T0 + timedelta(seconds=s) for s, _, _ in track],
                       [speed] * n, [sos] * n, [W.X0 + x for _, x, _ in track], [W.Y0 + y for _, _, y in track]))


def _kinds(c: psycopg.Connection) -> list[tuple]:
    return c.execute("SELECT kind, worker_id, geofence_id, t_start - %s, raised_at - t_start FROM alarms "
                     "WHERE t_start >= %s ORDER BY kind, t_start", (T0, T0)).fetchall()


@pytest.fixture()
def live(tiny_loaded, conn: psycopg.Connection) -> psycopg.Connection:  # noqa: ANN001
    conn.execute("DELETE FROM alarm_live_state")
    return conn


def test_no_parking_dwell_of_a_vehicle(live: psycopg.Connection) -> None:
    # W003 (vehicle) parks in GF002 (no_parking, 10 min) from 60 s on; fixes every minute, in 3 batches
    track = [(0, 300, 300)] + [(60 * k, 340, 340) for k in range(1, 13)]
    for part in (track[:5], track[5:11], track[11:]):
        _insert(live, "D003", "W003", part)
    assert _kinds(live) == [("no_parking_dwell", "W003", "GF002", timedelta(seconds=60), timedelta(minutes=10))]
    # the batch derive finds the same episode
    ep = live.execute("SELECT kind, geofence_id, t_start FROM geofence_episodes(%s, %s) WHERE worker_id = 'W003'",
                      (T0, T0 + timedelta(hours=1))).fetchall()
    assert ep == [("no_parking_dwell", "GF002", T0 + timedelta(seconds=60))]


def test_speeding_needs_a_sustained_excess(live: psycopg.Connection) -> None:
    # vehicle limit 13.9 m/s: 5 s at 20 m/s is a blip; then 12 s at 20 m/s is an alarm
    _insert(live, "D003", "W003", [(0, 10, 100), (5, 110, 100)], speed=20.0)
    _insert(live, "D003", "W003", [(10, 150, 100)], speed=5.0)
    _insert(live, "D003", "W003", [(20 + s, 160 + 10 * s, 100) for s in range(0, 13, 2)])  # implied 10 m/s
    assert _kinds(live) == []
    _insert(live, "D003", "W003", [(40 + s, 300, 100 + 20 * s) for s in range(0, 13, 3)], speed=20.0)
    assert _kinds(live) == [("speeding", "W003", None, timedelta(seconds=40), timedelta(seconds=10))]


def test_stationary_and_sos(live: psycopg.Connection) -> None:
    live.execute("UPDATE alarm_rules SET stationary_min = 5")
    # W002 (grid worker) within 10 m of one spot for 6 min (fixes every 30 s), one fix 4 m off
    track = [(30 * k, 300 + (4 if k == 3 else 0), 150) for k in range(13)]
    _insert(live, "D002", "W002", track[:7])
    _insert(live, "D002", "W002", track[7:])
    _insert(live, "D002", "W002", [(400, 301, 150)], sos=True)
    _insert(live, "D002", "W002", [(410, 301, 150)], sos=True)
    assert _kinds(live) == [("sos", "W002", None, timedelta(seconds=400), timedelta(0)),
                            ("stationary", "W002", None, timedelta(0), timedelta(minutes=5))]


def test_late_and_quiet_fixes_are_not_evaluated(live: psycopg.Connection) -> None:
    _insert(live, "D001", "W001", [(100, 100, 100)])
    _insert(live, "D001", "W001", [(0, 500, 500), (60, 500, 500), (90, 500, 500)])  # older than the last one
    live.execute("SELECT set_config('onemap.quiet', 'on', true)")
    _insert(live, "D001", "W001", [(200, 500, 500), (300, 500, 500)])  # a bulk load: the derive raises those
    assert _kinds(live) == []
