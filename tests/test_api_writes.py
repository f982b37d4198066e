"""Writes: POST /events, PATCH /events/{id} (lifecycle, 409), history, POST /gps/fixes, body caps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from tests.api_support import LAT0, LON0, auth


def test_create_event_committed_and_located(client, tokens, api_db_url) -> None:
    body = {
        "category": "sanitation",
        "priority": "B",
        "source": "resident",
        "description": "垃圾堆放",
        "lon": LON0 + 0.00051,
        "lat": LAT0 + 0.00052,
    }
    r = client.post("/events", json=body, headers=auth(tokens, "operator"))
    assert r.status_code == 201, r.text
    f = r.json()
    assert f["properties"]["status"] == "reported" and f["properties"]["grid_id"] == "G001"
    assert f["properties"]["deadline_at"] is not None
    assert r.headers["location"] == f"/collections/events/items/{f['id']}"
    engine = sa.create_engine(api_db_url)  # a separate connection sees it: committed
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT status, actor FROM events e JOIN event_status_history h "
                "ON h.event_id = e.id WHERE e.id = :id"
            ),
            {"id": f["id"]},
        ).one()
    engine.dispose()
    assert row == ("reported", "t-operator")


def test_create_event_validation(client, tokens) -> None:
    h = auth(tokens, "device")
    r = client.post("/events", json={"category": "nonsense", "lon": 200, "lat": 32.9}, headers=h)
    assert r.status_code == 422
    locs = {tuple(e["loc"]) for e in r.json()["errors"]}
    assert ("body", "category") in locs and ("body", "lon") in locs
    r = client.post("/events", json={"category": "sanitation"}, headers=h)
    assert r.status_code == 422 and "lon and lat" in r.json()["detail"]
    r = client.post(
        "/events", json={"category": "sanitation", "lon": LON0, "lat": LAT0, "extra": 1}, headers=h
    )
    assert r.status_code == 422
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    r = client.post(
        "/events", json={"category": "sanitation", "lon": LON0, "lat": LAT0, "reported_at": future}, headers=h
    )
    assert r.status_code == 422
    r = client.post("/events", content=b"{not json", headers={**h, "Content-Type": "application/json"})
    assert r.status_code == 422
    geo = {"category": "greening", "geometry": {"type": "Point", "coordinates": [LON0 + 0.003, LAT0 + 0.003]}}
    r = client.post("/events", json=geo, headers=h)
    assert r.status_code == 201 and r.json()["properties"]["grid_id"] == "G004"


def test_duplicate_event_id_conflicts(client, tokens) -> None:
    body = {"id": "EDUP1", "category": "dispute", "lon": LON0, "lat": LAT0}
    assert client.post("/events", json=body, headers=auth(tokens, "admin")).status_code == 201
    r = client.post("/events", json=body, headers=auth(tokens, "admin"))
    assert r.status_code == 409


def test_lifecycle_and_history(client, tokens) -> None:
    h = auth(tokens, "operator")
    eid = client.post(
        "/events", json={"category": "street_order", "lon": LON0, "lat": LAT0}, headers=h
    ).json()["id"]
    r = client.patch(f"/events/{eid}", json={"status": "handled"}, headers=h)
    assert r.status_code == 409
    body = r.json()
    assert body["allowed"] == ["accepted", "rejected"] and body["current"] == "reported"
    assert "reported -> handled" in body["detail"]
    for status in ("accepted", "dispatched"):
        r = client.patch(f"/events/{eid}", json={"status": status, "note": f"to {status}"}, headers=h)
        assert r.status_code == 200, r.text
        assert r.json()["properties"]["status"] == status
    r = client.patch(
        f"/events/{eid}", json={"status": "handled", "worker_id": "W002", "actor": "王五"}, headers=h
    )
    assert r.status_code == 200 and r.json()["properties"]["worker_id"] == "W002"
    hist = client.get(f"/events/{eid}/history", headers=auth(tokens, "viewer")).json()
    assert [x["to_status"] for x in hist["history"]] == ["reported", "accepted", "dispatched", "handled"]
    # the actor is the signed-in user; the body's actor is kept in the note
    assert hist["history"][-1]["actor"] == "t-operator" and "王五" in hist["history"][-1]["note"]
    assert hist["history"][1]["note"] == "to accepted"
    assert hist["allowed"] == ["verified"]
    r = client.patch(f"/events/{eid}", json={"status": "bogus"}, headers=h)
    assert r.status_code == 422
    assert client.patch("/events/NOPE", json={"status": "accepted"}, headers=h).status_code == 404
    assert client.get("/events/NOPE/history", headers=h).status_code == 404


def test_gps_fixes_batch(client, tokens, api_db_url) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    fixes = [
        {
            "device_id": "D001",
            "t": (t0 + timedelta(seconds=5 * i)).isoformat(),
            "lon": LON0 + 0.0001 * i,
            "lat": LAT0 + 0.0001,
            "speed": 1.2,
            "accuracy": 5,
        }
        for i in range(10)
    ]
    fixes.append({"device_id": "D999", "t": t0.isoformat(), "lon": LON0, "lat": LAT0})  # unknown device
    fixes.append({"device_id": "D001", "t": t0.isoformat(), "lon": 500, "lat": LAT0})  # bad lon
    fixes.append({"device_id": "D001", "t": fixes[0]["t"], "lon": LON0, "lat": LAT0})  # duplicate
    fixes.append("not an object")
    r = client.post("/gps/fixes", json=fixes, headers=auth(tokens, "device"))
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["accepted"] == 10
    assert [x["index"] for x in body["rejected"]] == [10, 11, 12, 13]
    assert body["rejected"][0]["errors"][0]["msg"] == "unknown or inactive device"
    assert body["rejected"][1]["errors"][0]["loc"] == ["lon"]
    engine = sa.create_engine(api_db_url)
    with engine.connect() as conn:
        n = conn.execute(
            sa.text("SELECT count(*) FROM gps_fixes WHERE device_id = 'D001' AND t >= :t"), {"t": t0}
        ).scalar_one()
        pos = conn.execute(
            sa.text("SELECT device_id, t FROM worker_positions WHERE worker_id = 'W001'")
        ).one()
    engine.dispose()
    assert n == 10 and pos[0] == "D001"
    again = client.post("/gps/fixes", json=fixes[:2], headers=auth(tokens, "device")).json()
    assert again["accepted"] == 0 and len(again["rejected"]) == 2
    assert (
        client.post("/gps/fixes", json={"device_id": "D001"}, headers=auth(tokens, "device")).status_code
        == 422
    )


def test_gps_batch_and_body_caps(client, tokens, api_settings) -> None:
    fix = {"device_id": "D002", "t": "2026-03-02T00:00:00Z", "lon": LON0, "lat": LAT0}
    r = client.post(
        "/gps/fixes", json=[fix] * (api_settings.api.max_gps_batch + 1), headers=auth(tokens, "device")
    )
    assert r.status_code == 413
    big = b"[" + b" " * (api_settings.api.max_body_bytes + 10) + b"]"
    r = client.post(
        "/gps/fixes", content=big, headers={**auth(tokens, "device"), "Content-Type": "application/json"}
    )
    assert r.status_code == 413 and r.json()["status"] == 413

    def chunks():  # no Content-Length: limit enforced while streaming
        for _ in range(api_settings.api.max_body_bytes // 65536 + 2):
            yield b" " * 65536

    r = client.post(
        "/events", content=chunks(), headers={**auth(tokens, "device"), "Content-Type": "application/json"}
    )
    assert r.status_code == 413
