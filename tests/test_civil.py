"""Issue 16 (civil affairs): camera viewsheds against an independent shapely visibility test,
community targets against hand-computed changes, care routes against networkx on the same
road_edges, and who may call the new routes (audit rows for person-level reads)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import networkx as nx
import pytest
import shapely
import sqlalchemy as sa

from gis import targets
from tests.api_support import LAT0, LON0, auth

CAM_H, HEADING, HFOV, PITCH, VFOV, RANGE = 6.0, 90.0, 90.0, -20.0, 60.0, 50.0
#: (x1, y1, x2, y2, height) relative to the test camera, EPSG:4548 metres
BOXES = [(15, -5, 25, 5, 3.0), (20, 12, 30, 20, 20.0)]


@pytest.fixture(scope="module")
def owner(api_db_url: str):  # noqa: ANN201
    engine = sa.create_engine(api_db_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def origin(owner) -> tuple[float, float]:  # noqa: ANN001
    """EPSG:4548 point ~1.9 km east of the seeded district (nothing else around)."""
    with owner.connect() as c:
        x, y = c.execute(sa.text("SELECT ST_X(g), ST_Y(g) FROM ST_Transform(ST_SetSRID(ST_MakePoint(:a, :b), 4490),"
                                 " 4548) g"), {"a": LON0 + 0.02, "b": LAT0}).one()
    return round(x), round(y)


def _g4490(wkt: str) -> str:
    return f"ST_Multi(ST_Transform(ST_GeomFromText('{wkt}', 4548), 4490))"


@pytest.fixture(scope="module")
def viewshed_case(owner, origin):  # noqa: ANN001, ANN201
    x0, y0 = origin
    with owner.begin() as c:
        for i, (x1, y1, x2, y2, h) in enumerate(BOXES):
            wkt = shapely.box(x0 + x1, y0 + y1, x0 + x2, y0 + y2).wkt
            c.execute(sa.text(f"INSERT INTO buildings (id, height, geom) VALUES (:id, :h, {_g4490(wkt)})"),
                      {"id": f"VS{i}", "h": h})
        c.execute(sa.text(
            "INSERT INTO cameras (id, name, kind, mount_height, heading, pitch, hfov, vfov, range_m, geom) VALUES "
            "('VSCAM', 'vs', 'street', :m, :hd, :p, :hf, :vf, :r, ST_Transform(ST_SetSRID(ST_MakePoint(:x, :y), 4548),"
            " 4490))"), {"m": CAM_H, "hd": HEADING, "p": PITCH, "hf": HFOV, "vf": VFOV, "r": RANGE, "x": x0, "y": y0})
        cam = c.execute(sa.text("SELECT ST_X(geom_4548), ST_Y(geom_4548) FROM cameras WHERE id = 'VSCAM'")).one()
        vs = c.execute(sa.text("SELECT ST_AsText(geom_4548) FROM camera_viewsheds WHERE camera_id = 'VSCAM'")).scalar()
        blds = [(shapely.from_wkt(w), h) for w, h in c.execute(sa.text(
            "SELECT ST_AsText(geom_4548), roof_height_m FROM buildings WHERE id LIKE 'VS%' ORDER BY id"))]
    return (cam[0], cam[1]), shapely.from_wkt(vs), blds


def _visible(cam: tuple[float, float], p: tuple[float, float], blds) -> bool:  # noqa: ANN001
    """Ground point p seen from the camera: range, bearing, elevation, no building above the sight line."""
    dx, dy = p[0] - cam[0], p[1] - cam[1]
    d = math.hypot(dx, dy)
    if d < 1e-6 or math.hypot(d, CAM_H) > RANGE:
        return False
    bearing = math.degrees(math.atan2(dx, dy)) % 360
    if abs((bearing - HEADING + 540) % 360 - 180) > HFOV / 2:
        return False
    if abs(math.degrees(math.atan2(-CAM_H, d)) - PITCH) > VFOV / 2:
        return False
    seg = shapely.LineString([cam, p])
    for fp, h in blds:
        if fp.contains(shapely.Point(p)):
            return False  # roof, not ground
        inter = seg.intersection(fp)
        for q in shapely.get_coordinates(inter):
            t = math.hypot(q[0] - cam[0], q[1] - cam[1]) / d
            if CAM_H * (1 - t) < h:
                return False
    return True


def test_viewshed_equals_shapely_visibility(viewshed_case) -> None:  # noqa: ANN001
    cam, vs, blds = viewshed_case
    boundary = vs.boundary
    edges = [fp.boundary for fp, _ in blds]
    agree = seen = hidden = 0
    for ix in range(-5, 55):
        for iy in range(-45, 46):
            p = (cam[0] + ix + 0.5, cam[1] + iy + 0.5)
            pt = shapely.Point(p)
            if boundary.distance(pt) < 0.25 or any(e.distance(pt) < 0.25 for e in edges):
                continue
            expect = _visible(cam, p, blds)
            assert vs.contains(pt) == expect, (ix, iy, expect)
            agree += 1
            seen += expect
            hidden += not expect
    assert seen > 500 and hidden > 500 and agree > 3000
    # the low building (15..25 m, roof 3 m, eye 6 m) hides the ground to twice its far edge (50 m)
    assert vs.contains(shapely.Point(cam[0] + 12, cam[1]))
    assert not vs.contains(shapely.Point(cam[0] + 40, cam[1]))
    assert not vs.contains(shapely.Point(cam[0] + 40, cam[1] + 22))


#: a lookout camera 3 m above the roof of a 30 m tower (footprint relative to the camera, off-centre)
#: and a 12 m building 110-130 m west of it, EPSG:4548 metres; the camera's range is 200 m
TOWER = (-8, -12, 14, 10, 30.0)
TOWER_FAR = (-130, -10, -110, 10, 12.0)
TOWER_CAM = {"mount": 33.0, "heading": 0.0, "hfov": 360.0, "range_m": 200.0}


def _sees(cam: tuple[float, float], p: tuple[float, float], blds, *, mount: float, heading: float,  # noqa: ANN001
          hfov: float, pitch: float, vfov: float | None, range_m: float) -> bool:
    """Ground point p seen from a camera ``mount`` m above level ground, in plain geometry: slant
    range, bearing, elevation angle within pitch +- vfov/2 (None: from hfov at 16:9, none from
    180°), no footprint above the sight line. A footprint holding the camera hides the ground like
    any other when the eye is above its roof (camera on the roof); when the eye is below its roof
    (camera on a wall) the camera looks out past it."""
    dx, dy = p[0] - cam[0], p[1] - cam[1]
    d = math.hypot(dx, dy)
    if d < 1e-6 or math.hypot(d, mount) > range_m:
        return False
    bearing = math.degrees(math.atan2(dx, dy)) % 360
    if hfov < 360 and abs((bearing - heading + 540) % 360 - 180) > hfov / 2:
        return False
    vf = vfov if vfov is not None else (
        180.0 if hfov >= 180 else math.degrees(2 * math.atan(math.tan(math.radians(hfov / 2)) * 9 / 16)))
    if vf < 180 and abs(math.degrees(math.atan2(-mount, d)) - pitch) > vf / 2:
        return False
    seg = shapely.LineString([cam, p])
    for fp, h in blds:
        if fp.contains(shapely.Point(p)):
            return False  # roof, not ground
        if fp.contains(shapely.Point(cam)) and h >= mount:
            continue
        for q in shapely.get_coordinates(seg.intersection(fp)):
            t = math.hypot(q[0] - cam[0], q[1] - cam[1]) / d
            if mount * (1 - t) < h - 1e-9:
                return False
    return True


@pytest.fixture(scope="module")
def tower_case(owner, origin):  # noqa: ANN001, ANN201
    """The lookout camera on its tower, 600 m north of the first viewshed case (out of its reach)."""
    x0, y0 = origin[0], origin[1] + 600
    with owner.begin() as c:
        for bid, (x1, y1, x2, y2, h) in (("RT0", TOWER), ("RT1", TOWER_FAR)):
            wkt = shapely.box(x0 + x1, y0 + y1, x0 + x2, y0 + y2).wkt
            c.execute(sa.text(f"INSERT INTO buildings (id, height, geom) VALUES (:id, :h, {_g4490(wkt)})"),
                      {"id": bid, "h": h})
        c.execute(sa.text(
            "INSERT INTO cameras (id, name, kind, mount_height, heading, pitch, hfov, range_m, geom) VALUES "
            "('RTCAM', 'tower', 'high_altitude', :m, :hd, -8, :hf, :r, ST_Transform(ST_SetSRID("
            "ST_MakePoint(:x, :y), 4548), 4490))"),
            {"m": TOWER_CAM["mount"], "hd": TOWER_CAM["heading"], "hf": TOWER_CAM["hfov"],
             "r": TOWER_CAM["range_m"], "x": x0, "y": y0})
        cam = c.execute(sa.text("SELECT ST_X(geom_4548), ST_Y(geom_4548) FROM cameras WHERE id = 'RTCAM'")).one()
        blds = [(shapely.from_wkt(w), h) for w, h in c.execute(sa.text(
            "SELECT ST_AsText(geom_4548), roof_height_m FROM buildings WHERE id LIKE 'RT%' ORDER BY id"))]
    return (cam[0], cam[1]), blds


@pytest.mark.parametrize(("pitch", "vfov", "seen_min"), [
    (-8.0, None, 20_000),  # pan-tilt dome (no vertical limit): the ground past the roof's edge
    (-12.0, 10.0, 5_000),  # a 10° vertical field: the ring 108-197 m out, less what the roof hides
    (15.0, 20.0, 0),  # looks above the horizon: no ground at all
])
def test_tower_camera_viewshed_equals_shapely(owner, tower_case, pitch: float, vfov: float | None,  # noqa: ANN001
                                              seen_min: int) -> None:
    """A camera mounted high sees the ground (its own roof hiding the foot of its tower), unless
    its pitch keeps the whole vertical field above the horizon; computed again with shapely."""
    cam, blds = tower_case
    with owner.begin() as c:
        c.execute(sa.text("UPDATE cameras SET pitch = :p, vfov = :v WHERE id = 'RTCAM'"), {"p": pitch, "v": vfov})
        vs = shapely.from_wkt(c.execute(sa.text(
            "SELECT ST_AsText(geom_4548) FROM camera_viewsheds WHERE camera_id = 'RTCAM'")).scalar())
    args = TOWER_CAM | {"pitch": pitch, "vfov": vfov}
    boundary = vs.boundary
    edges = [fp.boundary for fp, _ in blds]
    checked = seen = 0
    for ix in range(-100, 100):
        for iy in range(-100, 100):
            p = (cam[0] + 2 * ix + 0.5, cam[1] + 2 * iy + 0.5)
            pt = shapely.Point(p)
            if boundary.distance(pt) < 0.25 or any(e.distance(pt) < 0.25 for e in edges):
                continue
            expect = _sees(cam, p, blds, **args)
            assert vs.contains(pt) == expect, (ix, iy, expect)
            checked += 1
            seen += expect
    assert checked > 35_000
    assert seen * 4 >= seen_min and (seen > 0) == (seen_min > 0), seen  # 2 m grid: 4 m² a point
    if seen_min:
        # the roof hides the tower's foot: nothing within 80 m (8 m to the roof's west edge x 11)
        assert vs.distance(shapely.Point(cam)) > 80


def test_camera_moves_rebuild_viewshed(owner, viewshed_case) -> None:  # noqa: ANN001
    with owner.begin() as c:
        c.execute(sa.text("UPDATE cameras SET heading = 270 WHERE id = 'VSCAM'"))
        turned = shapely.from_wkt(c.execute(sa.text(
            "SELECT ST_AsText(geom_4548) FROM camera_viewsheds WHERE camera_id = 'VSCAM'")).scalar())
        c.execute(sa.text("UPDATE cameras SET heading = 90 WHERE id = 'VSCAM'"))
    _, vs, _ = viewshed_case
    assert turned.intersection(vs).area < 1.0 < turned.area  # looks west now: no overlap


def test_camera_coverage_route(client, tokens, owner, viewshed_case) -> None:  # noqa: ANN001
    cam, vs, _ = viewshed_case
    with owner.begin() as c:  # a primary road through community C01 and past the test camera
        c.execute(sa.text(
            "INSERT INTO roads (id, class, geom) VALUES ('VSR1', 'primary', ST_Multi(ST_Transform(ST_SetSRID("
            "ST_MakeLine(ST_MakePoint(:a, :b), ST_MakePoint(:c, :b)), 4490), 4490)))"),
            {"a": LON0 + 0.0001, "b": LAT0 + 0.0015, "c": LON0 + 0.0019})
        road = shapely.from_wkt(c.execute(sa.text(
            "SELECT ST_AsText(ST_Intersection(r.geom_4548, cm.geom_4548)) FROM roads r, communities cm"
            " WHERE r.id = 'VSR1' AND cm.id = 'C01'")).scalar())
        union = shapely.from_wkt(c.execute(sa.text("SELECT ST_AsText(ST_Union(geom_4548)) FROM camera_viewsheds"
                                                   )).scalar())
    r = client.get("/analytics/camera-coverage", params={"sites": 2, "spacing": 40},
                   headers=auth(tokens, "planner"))
    assert r.status_code == 200, r.text
    body = r.json()
    c01 = next(x for x in body["communities"] if x["community_id"] == "C01")
    assert c01["main_road_m"] == pytest.approx(road.length, abs=0.05)
    assert c01["covered_m"] == pytest.approx(road.intersection(union).length, abs=0.05)
    picks = body["sites"]
    assert picks and picks[0]["rank"] == 1
    assert all(a["score"] >= b["score"] for a, b in zip(picks, picks[1:], strict=False))
    r = client.get("/analytics/camera-viewsheds", headers=auth(tokens, "viewer"))
    assert r.status_code == 200 and any(f["id"] == "VSCAM" for f in r.json()["features"])
    assert client.get("/analytics/camera-coverage", headers=auth(tokens, "device")).status_code == 403


# --- targets ------------------------------------------------------------------------------------------
def _event(c, eid: str, cat: str, comm: str, t: datetime, closed_h: float | None = None) -> None:  # noqa: ANN001
    x = 1.0 if comm == "C01" else 3.0
    c.execute(sa.text(
        "INSERT INTO events (id, category, priority, source, status, reported_at, closed_at, deadline_at, geom)"
        " VALUES (:id, :cat, 'C', 'resident', :st, :t, :ct, :dl, ST_SetSRID(ST_MakePoint(:lon, :lat), 4490))"),
        {"id": eid, "cat": cat, "st": "closed" if closed_h is not None else "reported", "t": t,
         "ct": t + timedelta(hours=closed_h) if closed_h is not None else None, "dl": t + timedelta(hours=24),
         "lon": LON0 + x / 1000, "lat": LAT0 + 0.0031})


def test_targets_hand_computed(owner, tmp_path) -> None:  # noqa: ANN001
    b0 = datetime(2030, 1, 5, 10, tzinfo=UTC)
    c0 = datetime(2030, 3, 5, 10, tzinfo=UTC)
    with owner.begin() as c:
        c.execute(sa.text("SET LOCAL onemap.quiet = 'on'"))
        n = 0
        for comm, cats_base, cats_cur in (("C01", ["burglary"] * 10 + ["theft"] * 2, ["family_conflict"] * 6),
                                          ("C02", ["dispute"] * 4, ["theft"] * 5)):
            for i, cat in enumerate(cats_base):
                n += 1
                _event(c, f"TG{n}", cat, comm, b0 + timedelta(days=i), closed_h=20.0)
            for i, cat in enumerate(cats_cur):
                n += 1
                _event(c, f"TG{n}", cat, comm, c0 + timedelta(days=i), closed_h=10.0)
        _event(c, "TGX", "sanitation", "C01", c0, closed_h=1.0)  # not in the security group
        c.execute(sa.text("INSERT INTO surveys (community_id, period, respondents, satisfied) VALUES "
                          "('C01', '2030-01-01', 100, 85), ('C01', '2030-04-01', 200, 184),"
                          "('C02', '2030-04-01', 50, 40)"))
        ids = dict(c.execute(sa.text("SELECT id, community_id FROM events WHERE id LIKE 'TG%'")).all())
    assert {ids["TG1"], ids["TG13"]} == {"C01"} and ids["TG20"] == "C02"
    f = tmp_path / "t.yaml"
    f.write_text("""targets:
  - {id: sec, metric: events.count, group: security, community: each,
     baseline: {start: 2030-01-01, end: 2030-03-01}, change: -0.3, deadline: 2030-12-31}
  - {id: sat, metric: survey.satisfaction, community: each, baseline: {start: 2030-01-01, end: 2030-02-01},
     current: {start: 2030-04-01}, level: 0.9, deadline: 2030-12-31}
  - {id: closure, metric: events.closure_hours, categories: [burglary, theft, dispute, family_conflict],
     community: all, baseline: {start: 2030-01-01, end: 2030-03-01}, change: -0.2, deadline: 2030-12-31}
""", encoding="utf-8")
    as_of = datetime(2030, 4, 30, 4, tzinfo=UTC)  # 12:00 local: the current window ends 2030-05-01
    with owner.connect() as c:
        out = targets.evaluate(c, targets.load_targets(f), as_of)
    by = {t["id"]: {r["community_id"]: r for r in t["results"]} for t in out["targets"]}
    fraction = 61 / 305  # 2030-03-01 .. 2030-05-01 of 2030-03-01 .. 2030-12-31
    c01, c02 = by["sec"]["C01"], by["sec"]["C02"]
    assert (c01["baseline_value"], c01["current_value"]) == (12, 6)
    assert c01["achieved_change"] == pytest.approx((6 / 61) / (12 / 59) - 1, abs=1e-6)
    assert c01["expected_change"] == pytest.approx(-0.3 * fraction, abs=1e-6)
    assert c01["status"] == "met" and c01["on_track"] is True
    assert c02["achieved_change"] == pytest.approx((5 / 61) / (4 / 59) - 1, abs=1e-6)
    assert c02["status"] == "off_track" and c02["on_track"] is False
    assert [s["value"] for s in c01["series"]] == [12, 0, 6, 0]  # Jan 5-16, -, Mar 5-10, -
    assert by["sat"]["C01"]["current_value"] == pytest.approx(0.92) and by["sat"]["C01"]["status"] == "met"
    assert by["sat"]["C02"]["status"] == "off_track"
    closure = by["closure"][None]
    assert closure["baseline_value"] == pytest.approx(20.0) and closure["current_value"] == pytest.approx(10.0)
    assert closure["achieved_change"] == pytest.approx(-0.5) and closure["status"] == "met"
    comm = {r["community_id"]: r["status"] for r in out["communities"]}
    assert comm == {"C01": "on_track", "C02": "off_track"}


def test_targets_file_errors(tmp_path) -> None:  # noqa: ANN001
    f = tmp_path / "bad.yaml"
    f.write_text("targets:\n  - {id: x, metric: events.count, baseline: {start: 2030-01-01, end: 2030-02-01},"
                 " deadline: 2030-12-31}\n", encoding="utf-8")
    with pytest.raises(targets.InputError, match=r"bad.yaml: targets\[0\] \(id x\): give exactly one"):
        targets.load_targets(f)


def test_targets_route_roles(client, tokens) -> None:  # noqa: ANN001
    for role in ("admin", "operator", "planner", "viewer"):
        r = client.get("/analytics/targets", headers=auth(tokens, role))
        assert r.status_code == 200, r.text
        assert r.json()["file"].endswith("jiefang.yaml") and r.json()["targets"]
    assert client.get("/analytics/targets", headers=auth(tokens, "device")).status_code == 403
    assert client.get("/analytics/targets").status_code == 401


# --- care ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def care_world(owner, origin):  # noqa: ANN001, ANN201
    """A 4 x 3 road grid (60 m blocks) near the test camera and six households of W001 in buildings
    beside it, plus ten of W002 in the seeded district (for the suppressed counts)."""
    x0, y0 = origin[0] + 300, origin[1]
    with owner.begin() as c:
        lines = [((x0, y0 + j * 60), (x0 + 180, y0 + j * 60)) for j in range(3)]
        lines += [((x0 + i * 60, y0), (x0 + i * 60, y0 + 120)) for i in range(4)]
        lines += [((x0 + 180, y0 + 120), (x0 + 240, y0 + 200))]  # a spur
        for k, (a, b) in enumerate(lines):
            c.execute(sa.text(f"INSERT INTO roads (id, class, geom) VALUES (:id, 'residential', "
                              f"{_g4490(shapely.LineString([a, b]).wkt)})"), {"id": f"CR{k}"})
        c.execute(sa.text("SELECT road_graph_rebuild()"))
        spots = [(20, 10), (170, 110), (70, 50), (130, 10), (235, 190), (10, 110)]
        for k, (dx, dy) in enumerate(spots):
            wkt = shapely.box(x0 + dx - 4, y0 + dy - 4, x0 + dx + 4, y0 + dy + 4).wkt
            c.execute(sa.text(f"INSERT INTO buildings (id, height, geom) VALUES (:id, 9, {_g4490(wkt)})"),
                      {"id": f"CB{k}"})
            c.execute(sa.text("INSERT INTO restricted.care_households (id, building_id, category, interval_days,"
                              " worker_id, enrolled_on) VALUES (:id, :b, 'dujv', 7, 'W001', '2030-01-01')"),
                      {"id": f"H{k}", "b": f"CB{k}"})
        for k in range(10):
            c.execute(sa.text("INSERT INTO restricted.care_households (id, building_id, category, interval_days,"
                              " worker_id, enrolled_on) VALUES (:id, :b, :cat, 30, 'W002', '2030-01-01')"),
                      {"id": f"HS{k}", "b": "B000001" if k < 7 else "B000003", "cat": "gaoling" if k < 6 else "dibao"})
    return x0, y0


def test_care_visit_device_binding_and_audit(client, tokens, owner, care_world) -> None:  # noqa: ANN001
    dev = auth(tokens, "device")
    r = client.post("/care/visits", json={"household_id": "H0", "device_id": "D001",
                                          "visited_at": "2030-02-01T02:00:00Z"}, headers=dev)
    assert r.status_code == 201, r.text
    assert r.json()["worker_id"] == "W001"
    # a device not bound to the account, a worker other than the device's, a device of no worker
    for body in ({"household_id": "H0", "device_id": "D777"},
                 {"household_id": "H0", "device_id": "D001", "worker_id": "W002"},
                 {"household_id": "H0", "device_id": "D999"}, {"household_id": "H0"}):
        assert client.post("/care/visits", json=body, headers=dev).status_code == 403, body
    assert client.post("/care/visits", json={"household_id": "NOPE", "device_id": "D001"},
                       headers=dev).status_code == 404
    for role in ("operator", "planner", "viewer"):
        assert client.post("/care/visits", json={"household_id": "H0"}, headers=auth(tokens, role)).status_code == 403
    with owner.connect() as c:
        row = c.execute(sa.text(
            "SELECT worker_id, device_id FROM restricted.care_visits WHERE household_id = 'H0'")).all()
        audit = c.execute(sa.text("SELECT count(*) FROM audit_log WHERE action = 'care.visit'")).scalar()
    assert row == [("W001", "D001")] and audit == 1


def test_care_overdue_roles_and_audit(client, tokens, owner, care_world) -> None:  # noqa: ANN001
    at = "2030-02-05T00:00:00Z"
    with owner.connect() as c:
        before = c.execute(sa.text("SELECT count(*) FROM audit_log WHERE action = 'care.read_overdue'")).scalar()
    r = client.get("/care/overdue", params={"worker": "W001", "at": at}, headers=auth(tokens, "privileged"))
    assert r.status_code == 200, r.text
    rows = r.json()["households"]
    # enrolled 2030-01-01, every 7 days: all but H0 (visited 2030-02-01) are overdue since 01-08
    assert [h["household_id"] for h in rows] == ["H1", "H2", "H3", "H4", "H5"]
    assert rows[0]["days_overdue"] == pytest.approx(28.0)
    assert not any(k in rows[0] for k in ("name", "phone", "id_number"))
    with owner.connect() as c:
        after = c.execute(sa.text("SELECT count(*) FROM audit_log WHERE action = 'care.read_overdue'")).scalar()
        ids = c.execute(sa.text("SELECT ids FROM audit_log WHERE action = 'care.read_overdue' ORDER BY id DESC"
                                " LIMIT 1")).scalar()
    assert after == before + 1 and sorted(ids) == ["H1", "H2", "H3", "H4", "H5"]
    r = client.get("/care/overdue", params={"worker": "W001", "at": at}, headers=auth(tokens, "operator"))
    assert r.status_code == 200 and r.json()["withheld"] is True and r.json()["households"] is None
    for role in ("planner", "viewer", "device"):
        assert client.get("/care/overdue", headers=auth(tokens, role)).status_code == 403
    assert client.get("/care/overdue").status_code == 401


def test_care_route_equals_networkx(client, tokens, owner, care_world) -> None:  # noqa: ANN001
    r = client.get("/care/route", params={"worker": "W001", "date": "2030-02-05"}, headers=auth(tokens, "privileged"))
    assert r.status_code == 200, r.text
    body = r.json()
    with owner.connect() as c:
        edges = c.execute(sa.text("SELECT source, target, walk_s FROM road_edges")).all()
        verts = c.execute(sa.text("SELECT id, ST_X(geom_4548), ST_Y(geom_4548) FROM road_vertices")).all()
        pts = dict(c.execute(sa.text(
            "SELECT h.id, ST_AsText(ST_PointOnSurface(b.geom_4548)) FROM restricted.care_households h"
            " JOIN buildings b ON b.id = h.building_id WHERE h.worker_id = 'W001'")).all())
    g = nx.Graph()
    for s, t, w in edges:
        if not g.has_edge(s, t) or g[s][t]["weight"] > w:
            g.add_edge(s, t, weight=w)
    due = ["H1", "H2", "H3", "H4", "H5"]  # H0 next due 02-08; the rest due since 01-08 (id order)
    vid = {}
    for h in due:
        p = shapely.from_wkt(pts[h])
        vid[h] = min(verts, key=lambda v: (math.hypot(v[1] - p.x, v[2] - p.y), v[0]))[0]
    order, total, left = [due[0]], 0.0, due[1:]
    while left:
        dist = nx.single_source_dijkstra_path_length(g, vid[order[-1]], weight="weight")
        cost, nxt = min((dist[vid[h]], due.index(h)) for h in left if vid[h] in dist)
        order.append(due[nxt])
        left.remove(due[nxt])
        total += cost
    assert [s["household_id"] for s in body["stops"]] == order
    assert body["total_s"] == pytest.approx(total, abs=0.01)
    assert body["unreachable"] == [] and len(body["legs"]["features"]) == 4
    with owner.connect() as c:
        n = c.execute(sa.text("SELECT count(*) FROM audit_log WHERE action = 'care.read_route'")).scalar()
    assert n >= 1
    r = client.get("/care/route", params={"worker": "W001", "date": "2030-02-05"}, headers=auth(tokens, "admin"))
    assert r.status_code == 200 and r.json()["withheld"] is True
    assert client.get("/care/route", params={"worker": "W001"}, headers=auth(tokens, "planner")).status_code == 403


def test_care_counts_suppressed(client, tokens, care_world) -> None:  # noqa: ANN001
    r = client.get("/analytics/care", params={"at": "2030-02-05T00:00:00Z"}, headers=auth(tokens, "planner"))
    assert r.status_code == 200, r.text
    rows = {(x["community_id"], x["category"]): x for x in r.json()}
    # W002's ten: 7 in B000001 (C01: 6 gaoling + 1 dibao), 3 in B000003 (C01 too)
    c01 = [k for k in rows if k[0] == "C01"]
    assert rows[("C01", "gaoling")]["households"] == 6
    assert rows[("C01", "dibao")]["households"] is None  # 4 < 5
    assert all(v["households"] is None or v["households"] >= 5 for v in rows.values())
    assert c01
    for role in ("viewer", "device"):
        assert client.get("/analytics/care", headers=auth(tokens, role)).status_code == 403


def test_issue16_routes_are_in_the_role_matrix() -> None:
    """Every route of issue 16 is called by every role in tests/security/test_authorization_matrix.py
    (generated from the routes and gis.policy.POLICY), with the permission docs/api.md names."""
    from gis.policy import Permission as P
    from tests.security.test_authorization_matrix import ROUTES

    want = {("GET", "/analytics/access"): P.READ_ACCESS, ("GET", "/analytics/access/sites"): P.READ_ACCESS,
            ("GET", "/analytics/access/isochrones"): P.READ_ACCESS, ("GET", "/analytics/targets"): P.READ,
            ("GET", "/analytics/camera-coverage"): P.READ, ("GET", "/analytics/camera-viewsheds"): P.READ,
            ("GET", "/analytics/care"): P.READ_POPULATION, ("POST", "/care/visits"): P.RECORD_VISITS,
            ("GET", "/care/overdue"): P.CARE, ("GET", "/care/route"): P.CARE}
    got = {(method, path): perm for method, path, perm in ROUTES}
    assert {k: got.get(k) for k in want} == want
