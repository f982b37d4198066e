"""`onemap simulate` (issue 12, "a living day on `make run`"): the real command in a subprocess
against a real server on a copy of the full sample's database (its workers, shifts, devices,
patrol areas and road graph), through the public HTTP API only.

At speed 600 (a simulated hour every 6 real seconds) for about two real minutes: devices walk and
post fixes stamped with the real clock, residents report events, the operator dispatches them
(POST /events/{id}/dispatch), workers' devices accept; workers leave their patrol areas and the
server raises the geofence alarm (outside for 60 real seconds). Checked in the database and on the
big screen's KPIs (GET /analytics/kpis); SIGTERM stops it with exit 0. A second run from the
tokens file of the first, with no reachable database at all, still drives the day: the
simulation needs nothing but the API.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
import sqlalchemy as sa

from tests.api_support import make_settings, running_server

pytestmark = pytest.mark.timeout(900)

REPO = Path(__file__).resolve().parents[1]
SPEED = 600
DEVICES = 12
#: the server's geofence rule: outside the patrol area for 60 s (fix times are the real clock)
ALARM_AFTER_S = 60
DEADLINE_S = 240  # for everything checked below to have happened (typically ~100 s)


@pytest.fixture(scope="module")
def sim_db(pg_server, full_sample) -> Iterator[str]:  # noqa: ANN001
    """A copy of the full sample's database (the simulation writes fixes, events and accounts)."""
    url = pg_server.create_database("onemap_simulate", template="onemap_full_sample")
    # the session's full sample holds 1,000 GPS fixes (one device's); `make run` loads them all, so
    # every worker has a last position, where the simulation finds its devices: set them here, a
    # day old, inside each worker's patrol area
    engine = sa.create_engine(url)
    try:
        with engine.begin() as c:
            c.execute(sa.text("""
                INSERT INTO worker_positions (worker_id, device_id, t, speed, accuracy, geom)
                SELECT DISTINCT ON (w.id) w.id, d.id, now() - interval '1 day', 0, 5, ST_PointOnSurface(g.geom)
                  FROM workers w JOIN devices d ON d.worker_id = w.id
                  JOIN geofences g ON g.worker_id = w.id AND g.kind = 'patrol_area'
                 WHERE w.active ORDER BY w.id, d.id
                ON CONFLICT (worker_id) DO NOTHING"""))
    finally:
        engine.dispose()
    yield url
    pg_server.drop_database("onemap_simulate")


@pytest.fixture(scope="module")
def operator_token(sim_db: str) -> str:
    from gis.accounts import add_user

    engine = sa.create_engine(sim_db)
    try:
        return add_user(engine, "sim-test-watcher", "operator")
    finally:
        engine.dispose()


def _rows(url: str, sql: str, **params: object) -> list[sa.Row]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as c:
            return list(c.execute(sa.text(sql), params))
    finally:
        engine.dispose()


def _kpis(base: str, token: str) -> dict:
    r = httpx.get(f"{base}/analytics/kpis", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def _simulate(base: str, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "onemap.cli", "simulate", "--url", base, "--speed", str(SPEED),
                             "--wait", "60", *args], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _stopped(proc: subprocess.Popen[str], head: str = "") -> tuple[str, dict[str, int]]:
    """SIGTERM, then its output (after ``head``, what was read of it before); the figures of its
    last line ("stopped: {...}; N fixes and M events acknowledged, E errors")."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    text = head + out + err
    assert proc.returncode == 0, text[-3000:]
    m = re.search(r"stopped: .*?; (\d+) fixes and (\d+) events acknowledged, (\d+) errors", text)
    assert m, text[-3000:]
    return text, {"fixes": int(m[1]), "events": int(m[2]), "errors": int(m[3])}


def test_a_simulated_day_through_the_api(sim_db: str, operator_token: str, tmp_path: Path) -> None:
    settings = make_settings(sim_db, tmp_path / "tiles")
    env = {**os.environ, "ONEMAP_DATABASE_URL": sim_db, "ONEMAP_VAR_DIR": str(tmp_path), "ONEMAP_LOG_LEVEL": "WARNING"}
    with running_server(settings) as base:
        before = _kpis(base, operator_token)
        started = datetime.now(UTC)
        proc = _simulate(base, env, "--devices", str(DEVICES), "--events-per-day", "60")
        deadline = time.monotonic() + DEADLINE_S
        alarms: list[sa.Row] = []
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(5)
            alarms = _rows(sim_db, """
                SELECT a.worker_id, a.device_id, a.t_start, a.t_end FROM alarms a
                 WHERE a.kind = 'left_patrol_area' AND a.created_at >= :t AND a.device_id IN (
                       SELECT d.device_id FROM api_user_devices d JOIN api_users u ON u.id = d.user_id
                        WHERE u.name LIKE 'sim-device-%')""", t=started)
            steps = {r.to_status for r in _rows(sim_db, "SELECT DISTINCT to_status FROM event_status_history "
                                                        "WHERE recorded_at >= :t", t=started)}
            if alarms and {"dispatched", "en_route"} <= steps:
                break
        during = _kpis(base, operator_token)
        text, figures = _stopped(proc)
    print(text[-1500:])

    # accounts made by the command: one device account per simulated device, an operator, the
    # residents' app; tokens 0600
    tokens_file = tmp_path / "simulate-tokens.json"
    assert tokens_file.stat().st_mode & 0o777 == 0o600
    sims = {r.name: (r.role, list(r.devices)) for r in _rows(sim_db, """
        SELECT u.name, u.role, array_remove(array_agg(d.device_id ORDER BY d.device_id), NULL) AS devices
          FROM api_users u LEFT JOIN api_user_devices d ON d.user_id = u.id
         WHERE u.name LIKE 'sim-%' AND u.name <> 'sim-test-watcher' GROUP BY u.name, u.role""")}
    devices = sorted(d for role, ds in sims.values() if role == "device" for d in ds)
    assert len(devices) == DEVICES and sims["sim-operator-1"][0] == "operator", sims
    assert sims["sim-residents"] == ("device", []), sims

    # positions walk: every device posted fixes stamped with the real clock, moving at a
    # plausible pace (under the server's speeding limits: 8 m/s on foot, 13.9 by vehicle)
    fixes = _rows(sim_db, """
        SELECT device_id, t AS at, ST_X(geom_4548) AS x, ST_Y(geom_4548) AS y FROM gps_fixes
         WHERE t >= :t ORDER BY device_id, t""", t=started - timedelta(seconds=5))
    by_device: dict[str, list[sa.Row]] = {}
    for f in fixes:
        by_device.setdefault(f.device_id, []).append(f)
    assert sorted(by_device) == devices, (sorted(by_device), devices)
    assert figures["fixes"] == len(fixes), (figures, len(fixes))  # acknowledged = stored
    now = datetime.now(UTC)
    for dev, rows in by_device.items():
        assert len(rows) >= 10 and all(r.at <= now for r in rows), (dev, len(rows))
        xy = np.array([(r.x, r.y) for r in rows])
        dt = np.array([(b.at - a.at).total_seconds() for a, b in zip(rows, rows[1:], strict=False)])
        step = np.hypot(*np.diff(xy, axis=0).T)
        assert step.sum() > 20, (dev, step.sum())  # it moved
        assert np.all(step <= 13.9 * np.maximum(dt, 1) + 1), (dev, step.max())

    # residents reported events (source resident), the operator dispatched over the API, the
    # workers' devices accepted: every transition is attributed to a simulation account
    events = _rows(sim_db, "SELECT id, source, status FROM events WHERE reported_at >= :t", t=started)
    assert len(events) == figures["events"] > 0 and {e.source for e in events} == {"resident"}, (events, figures)
    # operators reject ~5 % of reports (SimulationConfig.reject_share) once each: an event that
    # waited for a free worker was judged again on every round (46 % rejected in a busy run)
    rejected = sum(1 for e in events if e.status == "rejected")
    assert rejected <= max(4, 0.25 * len(events)), (rejected, len(events))
    history = _rows(sim_db, "SELECT to_status, actor FROM event_status_history WHERE recorded_at >= :t", t=started)
    steps: dict[str, set[str]] = {}
    for h in history:
        steps.setdefault(h.to_status, set()).add(h.actor)
    assert "dispatched" in steps and "en_route" in steps, steps
    assert steps["dispatched"] <= {"sim-operator-1"}, steps
    assert steps["en_route"] <= {f"sim-device-{d}" for d in devices}, steps

    # some workers left their patrol areas: the server raised the alarm, after 60 s outside
    assert alarms, "no geofence alarm for a simulated device"
    for a in alarms:
        assert (a.t_end - a.t_start).total_seconds() >= ALARM_AFTER_S, a

    # the big screen lives: events reported today and patrollers on duty went up
    assert sum(during["events_today"].values()) > sum(before["events_today"].values()), (before, during)
    assert during["patrollers_on_duty"] > before["patrollers_on_duty"], (before, during)
    assert during["alarms_today"] > before["alarms_today"], (before, during)
    assert figures["errors"] == 0, text[-3000:]


def test_tokens_file_run_needs_no_database(sim_db: str, tmp_path: Path) -> None:
    """From the tokens of a first run, with ONEMAP_DATABASE_URL pointing nowhere: the simulation
    still posts fixes (they reach the server, which has the database)."""
    env = {**os.environ, "ONEMAP_DATABASE_URL": sim_db, "ONEMAP_VAR_DIR": str(tmp_path), "ONEMAP_LOG_LEVEL": "WARNING"}
    with running_server(make_settings(sim_db, tmp_path / "tiles")) as base:
        _, first = _stopped(*_run_for(_simulate(base, env, "--devices", "3", "--events-per-day", "0"), 8))
        nowhere = {**env, "ONEMAP_DATABASE_URL": "postgresql://nobody:x@127.0.0.1:1/nothing",
                   "ONEMAP_VAR_DIR": str(tmp_path / "elsewhere")}
        started = datetime.now(UTC)
        text, second = _stopped(*_run_for(_simulate(base, nowhere, "--devices", "3", "--events-per-day", "0",
                                                   "--token-file", str(tmp_path / "simulate-tokens.json")), 12))
    assert first["fixes"] > 0 and second["fixes"] > 0 and second["errors"] == 0, (first, second, text[-2000:])
    assert "accounts ready" not in text  # no account was made (it could not have been)
    stored = _rows(sim_db, "SELECT count(*) AS n FROM gps_fixes WHERE t >= :t", t=started - timedelta(seconds=5))[0].n
    assert stored >= second["fixes"], (stored, second)


def _run_for(proc: subprocess.Popen[str], seconds: float) -> tuple[subprocess.Popen[str], str]:
    """Let it run ``seconds`` after its "simulating ..." line; the process and what it printed
    until then."""
    deadline = time.monotonic() + 120
    assert proc.stdout is not None
    head = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        head.append(line)
        if not line or line.startswith("simulating"):
            break
    time.sleep(seconds)
    return proc, "".join(head)
