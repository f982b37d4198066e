"""Dispatch over the road network (migration 0005_dispatch, gis/routing.py, gis/dispatch.py)
against the real PostGIS + pgRouting: the graph built from the roads layer, ETAs and network
distances equal to networkx shortest paths on the same edges, availability rules, the dispatch
lifecycle with its history, priority deadlines and their escalation alarms.

Every test runs in one transaction of the tiny district and rolls back.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import networkx as nx
import numpy as np
import pytest
import shapely
import sqlalchemy as sa

from core.errors import ConflictError, PermissionDeniedError
from gis import dispatch, events, routing
from tests import gis_world as W

#: 10:00 local (02:00 UTC): inside the default duty roster 08:00-16:00
NOW = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)


@pytest.fixture()
def db(tiny_loaded, pg_url: str) -> Iterator[sa.Connection]:  # noqa: ANN001
    engine = sa.create_engine(pg_url)
    with engine.connect() as conn:
        tx = conn.begin()
        try:
            yield conn
        finally:
            tx.rollback()
    engine.dispose()


def _fix(conn: sa.Connection, worker: str, device: str, x: float, y: float, t: datetime) -> None:
    lon, lat = W.lonlat(x, y)
    conn.execute(sa.text("INSERT INTO gps_fixes (device_id, worker_id, t, geom) "
                         "VALUES (:d, :w, :t, ST_SetSRID(ST_MakePoint(:lon, :lat), 4490))"),
                 {"d": device, "w": worker, "t": t, "lon": lon, "lat": lat})


def _event(conn: sa.Connection, eid: str, x: float, y: float, priority: str = "B",
           category: str = "sanitation", reported_at: datetime | None = None) -> None:
    lon, lat = W.lonlat(x, y)
    events.create_event(conn, events.NewEvent(id=eid, category=category, lon=lon, lat=lat, priority=priority,
                                              reported_at=reported_at), actor="test")


def _add_roads(conn: sa.Connection, roads: list[tuple[str, str, bool, list[tuple[float, float]]]]) -> None:
    for rid, cls, bridge, pts in roads:
        wkt = "LINESTRING(" + ", ".join(f"{W.X0 + x} {W.Y0 + y}" for x, y in pts) + ")"
        conn.execute(sa.text(
            "INSERT INTO roads (id, class, bridge, geom) VALUES (:id, :cls, :b, "
            "ST_Multi(ST_Transform(ST_SetSRID(ST_GeomFromText(:wkt), 4548), 4490)))"),
            {"id": rid, "cls": cls, "b": bridge, "wkt": wkt})


def _random_roads(seed: int = 3, n: int = 14) -> list[tuple[str, str, bool, list[tuple[float, float]]]]:
    rng = np.random.default_rng(seed)
    classes = ["primary", "secondary", "residential", "service", None]
    out = []
    for k in range(n):
        pts = [tuple(map(float, rng.uniform(0, 400, 2))) for _ in range(int(rng.integers(2, 4)))]
        out.append((f"RX{k:02d}", classes[k % len(classes)], False, pts))
    return out


def _graph(conn: sa.Connection) -> nx.MultiGraph:
    g = nx.MultiGraph()
    for e in conn.execute(sa.text("SELECT id, source, target, length_m, walk_s, drive_s FROM road_edges")).mappings():
        g.add_edge(e["source"], e["target"], key=e["id"], length_m=e["length_m"], walk_s=e["walk_s"],
                   drive_s=e["drive_s"])
    return g


def _nx_leg(g: nx.MultiGraph, a: int, b: int, weight: str) -> tuple[float, float]:
    """(cost, length) of the cheapest path a -> b, computed by networkx on the same edges."""
    path = nx.dijkstra_path(g, a, b, weight=lambda u, v, d: min(x[weight] for x in d.values()))
    cost = length = 0.0
    for u, v in zip(path, path[1:], strict=False):
        best = min(g.get_edge_data(u, v).values(), key=lambda x: x[weight])
        cost += best[weight]
        length += best["length_m"]
    return cost, length


def test_graph_built_from_roads_at_load(db: sa.Connection) -> None:
    # the tiny district: two roads crossing at (300, 100) -> 4 edges, 5 vertices
    assert db.execute(sa.text("SELECT count(*) FROM road_edges")).scalar_one() == 4
    assert db.execute(sa.text("SELECT count(*) FROM road_vertices")).scalar_one() == 5
    crossing = db.execute(sa.text(
        "SELECT count(*) FROM road_vertices WHERE ST_DWithin(geom_4548, ST_SetSRID(ST_MakePoint(:x, :y), 4548), 0.01)"),
        {"x": W.X0 + 300, "y": W.Y0 + 100}).scalar_one()
    assert crossing == 1
    total = db.execute(sa.text("SELECT sum(length_m), sum(walk_s), sum(drive_s) FROM road_edges")).one()
    assert total[0] == pytest.approx(800.0, abs=1e-6)
    assert total[1] == pytest.approx(800.0 / (5 / 3.6), rel=1e-9)  # secondary: walk 5 km/h
    assert total[2] == pytest.approx(800.0 / (30 / 3.6), rel=1e-9)  # secondary: drive 30 km/h


def test_noding_matches_shapely(db: sa.Connection) -> None:
    """Random at-grade roads: the edges are the pieces shapely's noding gives, same total length
    (end snapping off: it moves ends, see test_road_ends_snapped_before_noding)."""
    roads = _random_roads()
    db.execute(sa.text("DELETE FROM roads"))
    _add_roads(db, roads)
    n_edges = db.execute(sa.text("SELECT road_graph_rebuild(0)")).scalar_one()
    lines = [shapely.LineString([(W.X0 + x, W.Y0 + y) for x, y in pts]) for _, _, _, pts in roads]
    noded = shapely.get_parts(shapely.unary_union(lines))
    assert n_edges == len(noded)
    got = db.execute(sa.text("SELECT sum(length_m) FROM road_edges")).scalar_one()
    assert got == pytest.approx(sum(ln.length for ln in lines), rel=1e-9)
    # every edge's cost is its length over its class speed
    bad = db.execute(sa.text(
        "SELECT count(*) FROM road_edges e JOIN road_speed s ON s.class = COALESCE(e.class, '*') "
        "WHERE abs(e.walk_s - e.length_m / (s.walk_kmh / 3.6)) > 1e-6 "
        "   OR abs(e.drive_s - e.length_m / (s.drive_kmh / 3.6)) > 1e-6")).scalar_one()
    assert bad == 0


def test_bridge_meets_roads_only_at_its_ends(db: sa.Connection) -> None:
    db.execute(sa.text("DELETE FROM roads"))
    _add_roads(db, [
        ("G1", "secondary", False, [(0, 100), (400, 100)]),
        ("G2", "secondary", False, [(0, 300), (400, 300)]),
        ("BR", "primary", True, [(200, 100), (200, 300)]),   # ends on G1 and G2
        ("G3", "secondary", False, [(100, 200), (300, 200)]),  # passes under the bridge at (200, 200)
    ])
    db.execute(sa.text("SELECT road_graph_rebuild()"))
    near = sa.text("SELECT count(*) FROM road_vertices "
                   "WHERE ST_DWithin(geom_4548, ST_SetSRID(ST_MakePoint(:x, :y), 4548), 0.5)")
    assert db.execute(near, {"x": W.X0 + 200, "y": W.Y0 + 200}).scalar_one() == 0  # no junction under it
    assert db.execute(near, {"x": W.X0 + 200, "y": W.Y0 + 100}).scalar_one() == 1  # G1 split at the bridge end
    assert db.execute(near, {"x": W.X0 + 200, "y": W.Y0 + 300}).scalar_one() == 1
    g = _graph(db)
    assert nx.number_connected_components(g) == 2  # G1+BR+G2, and G3 alone


@pytest.mark.parametrize("seed", [3, 11])
def test_eta_and_network_distance_equal_networkx(db: sa.Connection, seed: int) -> None:
    db.execute(sa.text("DELETE FROM roads"))
    _add_roads(db, _random_roads(seed, 16))
    db.execute(sa.text("SELECT road_graph_rebuild()"))
    g = _graph(db)
    rng = np.random.default_rng(seed + 100)
    cands = []
    for k in range(12):
        lon, lat = W.lonlat(*rng.uniform(0, 400, 2))
        cands.append({"id": f"c{k}", "lon": lon, "lat": lat, "mode": "walk" if k % 2 else "drive"})
    target = W.lonlat(*rng.uniform(0, 400, 2))
    legs = routing.network_legs(db, *target, cands)
    assert set(legs) == {c["id"] for c in cands}
    checked = 0
    for c in cands:
        leg = legs[c["id"]]
        a, b = leg["from_vertex"], leg["to_vertex"]
        if not nx.has_path(g, a, b):
            assert leg["network_m"] is None and leg["eta_s"] is None and leg["route"] is None
            continue
        cost, length = _nx_leg(g, a, b, f"{c['mode']}_s") if a != b else (0.0, 0.0)
        assert leg["eta_s"] == pytest.approx(cost, rel=1e-9, abs=1e-9)
        assert leg["network_m"] == pytest.approx(length, rel=1e-9, abs=1e-9)
        route = leg["route"]
        assert route["type"] == "LineString"
        assert route["coordinates"][0] == pytest.approx(list(c["lon"] for _ in [0]) + [c["lat"]], abs=1e-7)
        assert route["coordinates"][-1] == pytest.approx(list(target), abs=1e-7)
        # the route's length = access legs + the network path
        line = shapely.LineString([W.TO_LONLAT.transform(x, y, direction="INVERSE") for x, y in route["coordinates"]])
        assert line.length == pytest.approx(length + leg["access_m"], rel=1e-4, abs=0.05)
        checked += 1
    assert checked >= 6


def test_suggestions_only_available_workers_ranked_by_eta(db: sa.Connection) -> None:
    _event(db, "ED1", 300, 150)
    # the district's E0000002 (dispatched to W001 a week before NOW) is stale: W001 is not busy
    # paths run between the graph vertices nearest the fix and the event: W001 (fix 40 m from the
    # road's end at (0, 100)) walks 300 m to the crossing (300, 100), the vertex nearest the event;
    # W003 drives 300 m from (300, 400); W002's fix is stale
    _fix(db, "W001", "D001", 40, 100, NOW - timedelta(seconds=50))
    _fix(db, "W003", "D003", 300, 400, NOW - timedelta(seconds=30))
    _fix(db, "W002", "D002", 300, 140, NOW - timedelta(minutes=10))
    out = dispatch.suggestions(db, "ED1", NOW, n=5)
    ids = [s["worker_id"] for s in out["suggestions"]]
    assert ids == ["W003", "W001"]  # driving 300 m (30 km/h: 36 s) beats walking 300 m (216 s)
    by_id = {s["worker_id"]: s for s in out["suggestions"]}
    assert by_id["W001"]["network_m"] == pytest.approx(300, abs=0.01)
    assert by_id["W001"]["eta_s"] == pytest.approx(300 / (5 / 3.6), abs=0.01)
    assert by_id["W003"]["network_m"] == pytest.approx(300, abs=0.01)
    assert by_id["W003"]["eta_s"] == pytest.approx(300 / (30 / 3.6), abs=0.01)
    assert by_id["W003"]["route"]["type"] == "LineString"
    # a longer freshness window admits W002 (closest: 10 m)
    assert dispatch.suggestions(db, "ED1", NOW, max_fix_age_s=3600)["suggestions"][0]["worker_id"] == "W002"
    # off duty (20:00 local) nobody is available
    assert dispatch.suggestions(db, "ED1", NOW + timedelta(hours=10))["suggestions"] == []
    # a worker's own roster row overrides the default
    db.execute(sa.text("INSERT INTO duty_roster (worker_id, starts_local, ends_local) "
                       "VALUES ('W003', '18:00', '06:00')"))
    assert [s["worker_id"] for s in dispatch.suggestions(db, "ED1", NOW)["suggestions"]] == ["W001"]
    later = NOW + timedelta(hours=12)  # 22:00 local: W003's night shift
    _fix(db, "W003", "D003", 300, 400, later - timedelta(seconds=5))
    assert [s["worker_id"] for s in dispatch.suggestions(db, "ED1", later)["suggestions"]] == ["W003"]
    # inactive workers are not available
    db.execute(sa.text("UPDATE workers SET active = false WHERE id = 'W001'"))
    assert dispatch.suggestions(db, "ED1", NOW)["suggestions"] == []


def test_dispatch_lifecycle_with_history(db: sa.Connection) -> None:
    events.change_status(db, "E0000002", "handled", actor="op1")  # W001 free
    _event(db, "ED2", 300, 150)
    _event(db, "ED3", 290, 110)
    _fix(db, "W001", "D001", 40, 100, NOW - timedelta(seconds=50))
    _fix(db, "W003", "D003", 300, 400, NOW - timedelta(seconds=30))
    out = dispatch.dispatch(db, "ED2", actor="op1", now=NOW)
    assert out["worker_id"] == "W003" and out["suggested"] and out["eta_s"] == pytest.approx(36.0, abs=0.01)
    # W003 is busy now: not suggested for ED3, and refused when chosen
    assert [s["worker_id"] for s in dispatch.suggestions(db, "ED3", NOW)["suggestions"]] == ["W001"]
    with pytest.raises(ConflictError, match="busy with event 'ED2'"):
        dispatch.dispatch(db, "ED3", actor="op1", worker_id="W003", now=NOW)
    # the device of another worker may not act on ED2; W003's device may
    with pytest.raises(PermissionDeniedError):
        dispatch.worker_step(db, "ED2", "accept", actor="dev1", devices=frozenset({"D001"}))
    for action in ("accept", "arrive", "resolve"):
        dispatch.worker_step(db, "ED2", action, actor="dev3", devices=frozenset({"D003"}), note=action)
    with pytest.raises(ConflictError):
        dispatch.worker_step(db, "ED2", "arrive", actor="dev3", devices=frozenset({"D003"}))
    h = events.history(db, "ED2")
    assert [(x["from_status"], x["to_status"]) for x in h["history"]] == [
        (None, "reported"), ("reported", "accepted"), ("accepted", "dispatched"), ("dispatched", "en_route"),
        ("en_route", "on_scene"), ("on_scene", "handled")]
    assert h["history"][2]["actor"] == "op1" and "suggested" in h["history"][2]["note"]
    assert [x["actor"] for x in h["history"][3:]] == ["dev3"] * 3
    row = db.execute(sa.text("SELECT worker_id, en_route_at IS NOT NULL, on_scene_at IS NOT NULL, status "
                             "FROM events WHERE id = 'ED2'")).one()
    assert tuple(row) == ("W003", True, True, "handled")
    # handled: W003 is free again; a chosen worker is dispatched as asked
    out = dispatch.dispatch(db, "ED3", actor="op1", worker_id="W003", now=NOW)
    assert out["worker_id"] == "W003" and not out["suggested"]
    # nobody available -> 409
    _event(db, "ED4", 100, 100)
    with pytest.raises(ConflictError, match="no worker is available"):
        dispatch.dispatch(db, "ED4", actor="op1", now=NOW + timedelta(hours=10))
    # a handled event cannot be dispatched again
    with pytest.raises(ConflictError, match="cannot be dispatched"):
        dispatch.dispatch(db, "ED2", actor="op1", now=NOW)


def test_priority_deadline_queue_and_escalation(db: sa.Connection) -> None:
    assert [d["minutes"] for d in dispatch.deadlines(db)] == [240, 1440, 4320, 7200]
    dispatch.set_deadline(db, "A", 30, actor="op1")
    t0 = datetime.now(UTC) - timedelta(hours=1)
    _event(db, "EQA", 100, 100, priority="A", reported_at=t0)
    _event(db, "EQB", 100, 120, priority="B", reported_at=t0 - timedelta(minutes=5))
    _event(db, "EQD", 100, 140, priority="D", category="greening", reported_at=t0 - timedelta(minutes=9))
    dl = dict(db.execute(sa.text("SELECT id, deadline_at - reported_at FROM events WHERE id LIKE 'EQ%'")).all())
    assert dl == {"EQA": timedelta(minutes=30), "EQB": timedelta(hours=24),  # sanitation 24 h = B's 24 h
                  "EQD": timedelta(hours=72)}  # greening 72 h < D's 120 h
    q = [e["id"] for e in dispatch.queue(db) if e["id"].startswith("EQ")]
    assert q == ["EQA", "EQB", "EQD"]
    # only EQA has missed its deadline (30 min after t0); once per event
    assert dispatch.escalate(db) == 1
    assert dispatch.escalate(db) == 0
    alarm = db.execute(sa.text("SELECT kind, event_id, t_start, details->>'priority' FROM alarms "
                               "WHERE kind = 'deadline_missed'")).one()
    assert alarm[0:2] == ("deadline_missed", "EQA") and alarm[2] == t0 + timedelta(minutes=30)
    assert alarm[3] == "A"
    # a handled event is not escalated; nor a deadline missed before the lookback window
    _event(db, "EQH", 100, 160, priority="A", reported_at=t0)
    for s in ("accepted", "dispatched", "handled"):
        events.change_status(db, "EQH", s, actor="op1")
    _event(db, "EQO", 100, 180, priority="A", reported_at=t0 - timedelta(days=3))
    assert dispatch.escalate(db) == 0
    # escalation at a later time picks up EQB and EQD only when their deadlines pass
    assert dispatch.escalate(db, now=t0 + timedelta(hours=25)) == 1
    assert dispatch.escalate(db, now=t0 + timedelta(hours=73)) == 1


def test_road_ends_snapped_before_noding(db: sa.Connection) -> None:
    """Ends that stop short of (or run just past) a road, and pieces of a street with a gap between
    them, meet within the tolerance (2 m); farther ends stay apart; bridges take no junction."""
    db.execute(sa.text("DELETE FROM roads"))
    _add_roads(db, [
        ("M1", "secondary", False, [(0, 100), (400, 100)]),
        ("L1", "residential", False, [(100, 101.5), (100, 200)]),   # stops 1.5 m short of M1
        ("L2", "residential", False, [(200, 99.2), (200, 0)]),       # stops 0.8 m short, other side
        ("L3", "residential", False, [(300, 98.6), (300, 200)]),     # runs 1.4 m past M1
        ("L4", "residential", False, [(350, 103), (350, 200)]),      # 3 m short: stays apart
        ("S1", "tertiary", False, [(0, 300), (199, 300)]),           # a street in two pieces,
        ("S2", "tertiary", False, [(200.2, 300.5), (400, 300)]),     # 1.3 m apart
        ("BR", "primary", True, [(150, 90), (150, 300)]),            # over M1 (no junction) to S1
    ])
    db.execute(sa.text("SELECT road_graph_rebuild()"))
    g = _graph(db)
    assert nx.number_connected_components(g) == 3  # M1 + L1-L3; L4 alone; S1 + S2 + the bridge
    vid = {r[0]: r[1] for r in db.execute(sa.text(
        "SELECT road_id, array_agg(source) || array_agg(target) FROM road_edges GROUP BY road_id"))}
    comp = {v: k for k, c in enumerate(nx.connected_components(g)) for v in c}
    main = comp[vid["M1"][0]]
    for rid in ("L1", "L2", "L3"):
        assert comp[vid[rid][0]] == main, rid
    assert comp[vid["S1"][0]] == comp[vid["S2"][0]] == comp[vid["BR"][0]] != main
    assert comp[vid["L4"][0]] not in (main, comp[vid["S1"][0]])
    near = sa.text("SELECT count(*) FROM road_vertices "
                   "WHERE ST_DWithin(geom_4548, ST_SetSRID(ST_MakePoint(:x, :y), 4548), 0.02)")
    for x in (100, 200, 300):  # the junctions lie on M1
        assert db.execute(near, {"x": W.X0 + x, "y": W.Y0 + 100}).scalar_one() == 1, x
    # L3's overshoot is cut off, the short ends extended: M1 400 m, L1-L3 100 m, L4 97 m
    lengths = dict(db.execute(sa.text("SELECT road_id, sum(length_m) FROM road_edges GROUP BY road_id")).all())
    assert lengths["M1"] == pytest.approx(400, abs=0.01)
    assert lengths["L1"] == pytest.approx(100, abs=0.01) and lengths["L3"] == pytest.approx(100, abs=0.01)
    assert lengths["L2"] == pytest.approx(100, abs=0.01) and lengths["L4"] == pytest.approx(97, abs=0.01)
    # tolerance 0: the old behaviour (ends meet only where they touch): M1 + L3 (crossing), L1,
    # L2, L4, S1 + the bridge, S2
    db.execute(sa.text("SELECT road_graph_rebuild(0)"))
    assert nx.number_connected_components(_graph(db)) == 6


def test_cli_deadlines(tiny_loaded, use_database: str) -> None:  # noqa: ANN001
    from typer.testing import CliRunner

    from onemap.cli import app

    runner = CliRunner()
    try:
        out = runner.invoke(app, ["dispatch", "deadlines", "--set", "A=200", "--set", "c=4000"])
        assert out.exit_code == 0, out.output
        lines = {ln.split()[0]: ln for ln in out.output.splitlines()}
        assert lines["A"].split()[1] == "200" and "changed" in lines["A"] and "cli:" in lines["A"]
        assert lines["C"].split()[1] == "4000" and lines["B"].split()[1] == "1440" and "changed" not in lines["B"]
        assert runner.invoke(app, ["dispatch", "deadlines", "--set", "E=5"]).exit_code == 2
        assert runner.invoke(app, ["dispatch", "deadlines", "--set", "A=0"]).exit_code == 2
    finally:
        runner.invoke(app, ["dispatch", "deadlines", "--set", "A=240", "--set", "C=4320"])
