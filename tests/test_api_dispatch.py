"""Dispatch over HTTP: suggestions, POST /events/{id}/dispatch, the device's steps, the queue,
priority deadlines, and /analytics/patrollers/nearest by=network|straight (straight unchanged)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from gis import analytics
from tests.api_support import LAT0, LON0, auth

D = 0.001  # ~100 m


@pytest.fixture(scope="module")
def roads_and_fixes(api_db_url: str) -> str:
    """Two roads crossing at (LON0+2D, LAT0+1D); W001 (walks) and W003 (drives) on duty all day
    with fresh fixes; W002 without a fix."""
    engine = sa.create_engine(api_db_url)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO roads (id, class, geom) VALUES "
            "('RA', 'secondary', ST_GeomFromText(:a, 4490)), ('RB', 'primary', ST_GeomFromText(:b, 4490))"),
            {"a": f"MULTILINESTRING(({LON0} {LAT0 + D}, {LON0 + 4 * D} {LAT0 + D}))",
             "b": f"MULTILINESTRING(({LON0 + 2 * D} {LAT0}, {LON0 + 2 * D} {LAT0 + 4 * D}))"})
        conn.execute(sa.text("SELECT road_graph_rebuild()"))
        conn.execute(sa.text("INSERT INTO duty_roster (worker_id, starts_local, ends_local) VALUES "
                             "('W001', '00:00', '23:59:59.999'), ('W003', '00:00', '23:59:59.999')"))
        for dev, wid, lon, lat in (("D001", "W001", LON0 + 0.1 * D, LAT0 + D),
                                   ("D003", "W003", LON0 + 2 * D, LAT0 + 4 * D)):
            conn.execute(sa.text("INSERT INTO gps_fixes (device_id, worker_id, t, geom) "
                                 "VALUES (:d, :w, :t, ST_SetSRID(ST_MakePoint(:lon, :lat), 4490))"),
                         {"d": dev, "w": wid, "t": now - timedelta(seconds=20), "lon": lon, "lat": lat})
    engine.dispose()
    return api_db_url


def test_nearest_by_straight_unchanged_and_by_network(client, tokens, roads_and_fixes) -> None:
    h = auth(tokens, "operator")
    params = {"lon": LON0 + 2 * D, "lat": LAT0 + 1.5 * D, "n": 3}
    straight = client.get("/analytics/patrollers/nearest", params={**params, "by": "straight"}, headers=h)
    assert straight.status_code == 200, straight.text
    engine = sa.create_engine(roads_and_fixes)
    before = analytics.nearest_patrollers(engine, params["lon"], params["lat"], 3)
    engine.dispose()
    got = straight.json()
    assert [r["worker_id"] for r in got] == [r["worker_id"] for r in before]
    for new, old in zip(got, before, strict=True):
        same = [k for k in old if k not in ("t", "fix_age_s")]  # fix_age_s: measured at another instant
        assert {k: new[k] for k in same} == pytest.approx({k: old[k] for k in same})
        assert {"network_m", "eta_s", "route"} <= set(new)
    network = client.get("/analytics/patrollers/nearest", params=params, headers=h).json()  # default network
    assert [r["worker_id"] for r in network] == sorted(
        (r["worker_id"] for r in network), key=lambda w: next(x["network_m"] for x in network if x["worker_id"] == w))
    w3 = next(r for r in network if r["worker_id"] == "W003")
    assert w3["network_m"] == pytest.approx(w3["network_m"]) and w3["route"]["type"] == "LineString"
    assert w3["eta_s"] == pytest.approx(w3["network_m"] / (40 / 3.6), rel=1e-6)  # primary: 40 km/h


def test_dispatch_flow(client, tokens, roads_and_fixes) -> None:
    op, dev, viewer = auth(tokens, "operator"), auth(tokens, "device"), auth(tokens, "viewer")
    r = client.post("/events", json={"category": "sanitation", "priority": "A", "lon": LON0 + 2 * D,
                                      "lat": LAT0 + 1.5 * D}, headers=op)
    assert r.status_code == 201, r.text
    eid = r.json()["id"]
    assert client.get(f"/events/{eid}/dispatch/suggestions", headers=viewer).status_code == 403
    s = client.get(f"/events/{eid}/dispatch/suggestions", headers=op)
    assert s.status_code == 200, s.text
    ranked = s.json()["suggestions"]
    assert [x["worker_id"] for x in ranked] == ["W003", "W001"]  # driving beats walking
    assert ranked[0]["eta_s"] < ranked[1]["eta_s"]
    q = client.get("/dispatch/queue", headers=op).json()
    assert q[0]["priority"] == "A"
    r = client.post(f"/events/{eid}/dispatch", headers=op)
    assert r.status_code == 200, r.text
    assert r.json()["worker_id"] == "W003" and r.json()["suggested"]
    assert client.post(f"/events/{eid}/accept", headers=op).status_code == 403  # operators do not do the steps
    for action, status in (("accept", "en_route"), ("arrive", "on_scene"), ("resolve", "handled")):
        r = client.post(f"/events/{eid}/{action}", headers=dev)
        assert r.status_code == 200 and r.json()["status"] == status, r.text
    assert client.post(f"/events/{eid}/arrive", headers=dev).status_code == 409
    hist = client.get(f"/events/{eid}/history", headers=op).json()["history"]
    assert [x["to_status"] for x in hist] == ["reported", "accepted", "dispatched", "en_route", "on_scene", "handled"]
    assert hist[2]["actor"] == "t-operator" and hist[3]["actor"] == "t-device"


def test_deadlines_route(client, tokens, roads_and_fixes) -> None:
    op = auth(tokens, "operator")
    r = client.patch("/dispatch/deadlines/A", json={"minutes": 45}, headers=op)
    assert r.status_code == 200 and r.json()["minutes"] == 45
    assert client.patch("/dispatch/deadlines/A", json={"minutes": 0}, headers=op).status_code == 422
    assert client.patch("/dispatch/deadlines/A", json={"minutes": 5}, headers=auth(tokens, "viewer")).status_code == 403
    r = client.post("/events", json={"category": "sanitation", "priority": "A", "lon": LON0 + D, "lat": LAT0 + D},
                    headers=op)
    p = r.json()["properties"]
    delta = datetime.fromisoformat(p["deadline_at"]) - datetime.fromisoformat(p["reported_at"])
    assert delta == timedelta(minutes=45)
    assert [d["priority"] for d in client.get("/dispatch/deadlines", headers=op).json()] == ["A", "B", "C", "D"]
