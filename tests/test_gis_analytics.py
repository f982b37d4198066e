"""gis.analytics on the tiny district, each checked against an independent Python computation."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import shapely
from sqlalchemy import text

from gis import analytics as A
from tests import gis_world as W

START, END = W.DAY - timedelta(days=3), W.DAY + timedelta(days=1)


def _events_xy(c) -> list[tuple[str, str, float, float]]:  # noqa: ANN001
    """The loaded events with their stored EPSG:4548 coordinates (the delivered x/y went through
    EPSG:4490 and back, so points delivered exactly on a cell edge may fall on either side)."""
    q = "SELECT id, category, ST_X(geom_4548), ST_Y(geom_4548) FROM events WHERE id LIKE 'E0%' ORDER BY id"
    return [tuple(r) for r in c.execute(text(q))]


def _insert_event(
    c,
    eid: str,
    x: float,
    y: float,
    category: str = "sanitation",  # noqa: ANN001
    reported: datetime | None = None,
) -> None:
    c.execute(
        text("""INSERT INTO events (id, category, priority, source, reported_at, geom)
                      VALUES (:id, :cat, 'C', 'resident', :t,
                              ST_Transform(ST_SetSRID(ST_MakePoint(:x, :y), 4548), 4490))"""),
        {"id": eid, "cat": category, "t": reported or W.DAY - timedelta(hours=1), "x": x, "y": y},
    )


# --- density -------------------------------------------------------------------------------------------
def test_density_grid_counts_match_point_in_polygon(sa_conn) -> None:  # noqa: ANN001
    fc = A.event_density(sa_conn, START, END, cell="grid")
    got = {f["id"]: f["properties"]["count"] for f in fc["features"]}
    want = {
        g: sum(poly.contains(shapely.Point(x, y)) for _, _, x, y in _events_xy(sa_conn))
        for g, (poly, _, _) in W.GRIDS.items()
    }
    assert got == want
    only = A.event_density(sa_conn, START, END, category="sanitation", cell="grid")
    assert sum(f["properties"]["count"] for f in only["features"]) == sum(
        c == "sanitation" for _, c, _, _ in _events_xy(sa_conn)
    )
    assert fc["features"][0]["geometry"]["type"] in ("Polygon", "MultiPolygon")


def test_density_square_matches_numpy_floor(sa_conn) -> None:  # noqa: ANN001
    size = 100.0
    fc = A.event_density(sa_conn, START, END, cell="square", size_m=size)
    got = {(f["properties"]["i"], f["properties"]["j"]): f["properties"]["count"] for f in fc["features"]}
    xy = np.array([(x, y) for _, _, x, y in _events_xy(sa_conn)])
    ij, counts = np.unique(np.floor(xy / size).astype(int), axis=0, return_counts=True)
    assert got == {(int(i), int(j)): int(n) for (i, j), n in zip(ij, counts, strict=True)}


def test_density_hex_each_event_in_its_hexagon(sa_conn) -> None:  # noqa: ANN001
    fc = A.event_density(sa_conn, START, END, cell="hex", size_m=60)
    assert fc["meta"]["total"] == len(_events_xy(sa_conn))
    from pyproj import Transformer

    to_lonlat = Transformer.from_crs("EPSG:4548", "EPSG:4490", always_xy=True)
    for f in fc["features"]:
        hexagon = shapely.geometry.shape(f["geometry"])
        inside = sum(
            hexagon.buffer(1e-9).covers(shapely.Point(*to_lonlat.transform(x, y)))
            for _, _, x, y in _events_xy(sa_conn)
        )
        assert inside == f["properties"]["count"]
        assert len(hexagon.exterior.coords) == 7


# --- hotspots ------------------------------------------------------------------------------------------
def _gi_star(x: np.ndarray, centres: np.ndarray, d: float) -> np.ndarray:
    n = len(x)
    dist = np.hypot(*(centres[:, None, :] - centres[None, :, :]).transpose(2, 0, 1))
    w = (dist <= d + 1e-9).astype(float)
    xbar, s = x.mean(), math.sqrt((x**2).mean() - x.mean() ** 2)
    wsum = w.sum(axis=1)
    return (w @ x - xbar * wsum) / (s * np.sqrt((n * (w**2).sum(axis=1) - wsum**2) / (n - 1)))


def test_hotspots_gi_star_matches_numpy(sa_conn) -> None:  # noqa: ANN001
    cluster = [(W.X0 + 5 + dx, W.Y0 + 5 + dy) for dx, dy in np.random.default_rng(3).uniform(0, 90, (25, 2))]
    for k, (cx, cy) in enumerate(cluster):  # a cluster in the SW square
        _insert_event(sa_conn, f"EX{k:04d}", cx, cy)
    size = 100.0
    fc = A.event_hotspots(sa_conn, START, END, cell="square", size_m=size)
    feats = fc["features"]
    assert len(feats) == 16  # the 400 m x 400 m district in 100 m squares
    # independent: counts by point-in-square, neighbours by centroid distance
    pts = [(x, y) for _, _, x, y in _events_xy(sa_conn)]
    pts += cluster
    ij = sorted((f["properties"]["i"], f["properties"]["j"]) for f in feats)
    x = np.array(
        [sum(math.floor(px / size) == i and math.floor(py / size) == j for px, py in pts) for i, j in ij],
        dtype=float,
    )
    centres = np.array([((i + 0.5) * size, (j + 0.5) * size) for i, j in ij])
    z = _gi_star(x, centres, 1.5 * size)
    by = {(f["properties"]["i"], f["properties"]["j"]): f["properties"] for f in feats}
    for k, key in enumerate(ij):
        assert by[key]["count"] == x[k]
        assert by[key]["gi_z"] == pytest.approx(z[k], rel=1e-9, abs=1e-9)
        assert by[key]["p"] == pytest.approx(math.erfc(abs(z[k]) / math.sqrt(2)), rel=1e-9)
    hottest = max(feats, key=lambda f: f["properties"]["gi_z"])
    sw = (int(W.X0 // size), int(W.Y0 // size))
    assert (hottest["properties"]["i"], hottest["properties"]["j"]) in {
        sw,
        (sw[0] + 1, sw[1]),
        (sw[0], sw[1] + 1),
    }
    assert hottest["properties"]["gi_z"] > 1.5  # 16 cells only: z is bounded, p ~ 0.08 here


# --- SLA ---------------------------------------------------------------------------------------------------
def test_sla_against_python(sa_conn) -> None:  # noqa: ANN001
    deadlines = dict(sa_conn.execute(text("SELECT code, deadline_hours FROM event_category")).fetchall())
    now = W.DAY + timedelta(hours=2)
    rows = {r["key"]: r for r in A.sla(sa_conn, "category", now=now)}
    cols = [
        "reported_at",
        "accepted_at",
        "dispatched_at",
        "handled_at",
        "verified_at",
        "closed_at",
        "rejected_at",
    ]
    want: dict[str, dict] = {}
    stage_times: dict[str, dict[str, list[float]]] = {}
    for e in W.events_rows():
        w = want.setdefault(e["category"], {"total": 0, "open": 0, "overdue": 0})
        w["total"] += 1
        reported = datetime.fromisoformat(e["reported_at"].replace("Z", "+00:00"))
        if e["status"] not in ("closed", "rejected"):
            w["open"] += 1
            w["overdue"] += reported + timedelta(hours=deadlines[e["category"]]) < now
        steps = [(c[:-3], datetime.fromisoformat(e[c].replace("Z", "+00:00"))) for c in cols if e[c]]
        for (st, t0), (_, t1) in zip(steps, steps[1:], strict=False):
            stage_times.setdefault(e["category"], {}).setdefault(st, []).append((t1 - t0).total_seconds())
    assert set(rows) == set(want)
    for key, w in want.items():
        assert {k: rows[key][k] for k in w} == w, key
        means = {st: sum(v) / len(v) for st, v in stage_times.get(key, {}).items()}
        assert rows[key]["mean_stage_s"] == pytest.approx(means), key
    by_grid = {r["key"]: r for r in A.sla(sa_conn, "grid", now=now)}
    assert by_grid["G001"]["total"] == 3
    by_worker = {r["key"]: r for r in A.sla(sa_conn, "worker", now=now)}
    assert by_worker["W001"]["open"] == 2


def test_sla_stage_times_of_a_reopened_event(sa_conn) -> None:  # noqa: ANN001
    """Never-reopened events are timed from their lifecycle columns, reopened ones from their
    history (the reopen cleared their columns): both must count, each step once."""
    t = W.DAY - timedelta(days=1)  # gis_world's events start here
    for status, h in (("dispatched", 9), ("handled", 10), ("verified", 12), ("closed", 13)):
        sa_conn.execute(
            text("SELECT event_set_status('E0000001', :s, 'tester', NULL, :at)"),
            {"s": status, "at": t + timedelta(hours=h)},
        )
    # sanitation: E0000001 (closed at 7 h, reopened at 9 h), E0000006 (handled), E0000007 (verified)
    paths = {
        "E0000001": [("reported", 0), ("accepted", 1), ("dispatched", 2), ("handled", 5), ("verified", 6),
                     ("closed", 7), ("dispatched", 9), ("handled", 10), ("verified", 12), ("closed", 13)],
        "E0000006": [("reported", 0), ("accepted", 1), ("dispatched", 2), ("handled", 30)],
        "E0000007": [("reported", 0), ("accepted", 1), ("dispatched", 1.5), ("handled", 3), ("verified", 4)],
    }
    spent: dict[str, list[float]] = {}
    for path in paths.values():
        for (stage, h0), (_, h1) in zip(path, path[1:], strict=False):
            spent.setdefault(stage, []).append((h1 - h0) * 3600)
    want = {stage: sum(v) / len(v) for stage, v in spent.items()}
    row = {r["key"]: r for r in A.sla(sa_conn, "category", now=W.DAY)}["sanitation"]
    assert row["mean_stage_s"] == pytest.approx(want)
    assert row["mean_stage_s"]["closed"] == pytest.approx(7200)  # only the reopened event left 'closed'
    assert (row["total"], row["closed"], row["open"]) == (3, 1, 2)


# --- nearest patrollers -----------------------------------------------------------------------------
def test_nearest_patrollers_knn(sa_conn) -> None:  # noqa: ANN001
    latest: dict[str, tuple[datetime, float, float]] = {}
    for f in W.gps_rows():
        if f["worker_id"] not in latest or f["t"] > latest[f["worker_id"]][0]:
            latest[f["worker_id"]] = (f["t"], f["lon"], f["lat"])
    from pyproj import Transformer

    tr = Transformer.from_crs("EPSG:4490", "EPSG:4548", always_xy=True)
    qx, qy = W.X0 + 250, W.Y0 + 120
    now = W.DAY + timedelta(hours=3)
    want = sorted(
        (
            (math.dist(tr.transform(lon, lat), (qx, qy)), w, (now - t).total_seconds())
            for w, (t, lon, lat) in latest.items()
        )
    )
    got = A.nearest_patrollers(sa_conn, *W.lonlat(250, 120), n=2, now=now)
    assert [g["worker_id"] for g in got] == [w for _, w, _ in want[:2]]
    for g, (d, _, age) in zip(got, want, strict=False):
        assert g["distance_m"] == pytest.approx(d, abs=1e-3)
        assert g["fix_age_s"] == pytest.approx(age)
    recent = A.nearest_patrollers(sa_conn, *W.lonlat(250, 120), n=5, now=now, max_fix_age_s=3600)
    assert [g["worker_id"] for g in recent] == ["W002"]
    assert [
        g["worker_id"] for g in A.nearest_patrollers(sa_conn, *W.lonlat(0, 0), n=5, kind="vehicle", now=now)
    ] == ["W003"]


# --- cameras ---------------------------------------------------------------------------------------------
def _visible_python(cams: list[dict], buildings: list[dict], tx: float, ty: float, h: float) -> set[str]:
    """Independent implementation of the documented method with shapely."""
    out = set()
    target = shapely.Point(tx, ty)
    for c in cams:
        cx, cy = c["x"], c["y"]
        d = math.hypot(tx - cx, ty - cy)
        if math.hypot(d, c["mount"] - h) > c["range"]:
            continue
        if c["hfov"] < 360 and d >= 0.01:
            bearing = math.degrees(math.atan2(tx - cx, ty - cy)) % 360
            diff = abs((bearing - c["heading"] + 540) % 360 - 180)
            if diff > c["hfov"] / 2:
                continue
        if d >= 0.01:
            seg = shapely.LineString([(cx, cy), (tx, ty)])
            blocked = False
            for b in buildings:
                fp = b["geom"]
                if fp.intersects(shapely.Point(cx, cy)) or fp.intersects(target) or not fp.intersects(seg):
                    continue
                for px, py in shapely.get_coordinates(fp.intersection(seg)):
                    frac = seg.project(shapely.Point(px, py)) / seg.length
                    if c["mount"] + (h - c["mount"]) * frac < b["roof"]:
                        blocked = True
            if blocked:
                continue
        out.add(c["id"])
    return out


def test_cameras_visible_matches_shapely(sa_conn) -> None:  # noqa: ANN001
    # level ground, no vertical field-of-view limit: the 2D prism model below applies (pitch,
    # vfov and terrain: tests/test_ground_3d.py)
    sa_conn.execute(text("UPDATE cameras SET vfov = 180"))
    # a tall wall between CAM0001 (100, 10) and the road, and a low shed that must not block
    sa_conn.execute(
        text("""INSERT INTO buildings (id, height, geom)
        SELECT id, h,
               ST_Transform(ST_Multi(ST_MakeEnvelope(:x0 + a, :y0 + 30, :x0 + a + 10, :y0 + 34, 4548)), 4490)
          FROM (VALUES ('BX_WALL', 25.0, 92), ('BX_SHED', 2.5, 102.1)) v(id, h, a)
    """),
        {"x0": W.X0, "y0": W.Y0},
    )
    rows = sa_conn.execute(
        text("""SELECT id, ST_X(geom_4548), ST_Y(geom_4548), mount_height, heading, hfov, range_m
                                     FROM cameras""")
    ).fetchall()
    cams = [
        {"id": r[0], "x": r[1], "y": r[2], "mount": r[3], "heading": r[4], "hfov": r[5], "range": r[6]}
        for r in rows
    ]
    brows = sa_conn.execute(text("SELECT ST_AsBinary(geom_4548), roof_height_m FROM buildings")).fetchall()
    buildings = [{"geom": shapely.from_wkb(bytes(g)), "roof": r} for g, r in brows]
    rng = np.random.default_rng(11)
    targets = [
        (90, 100),
        (110, 100),
        (100, 140),
        (260, 60),
        (100, 10),
        *rng.uniform(0, 400, (40, 2)).tolist(),
    ]
    saw_blocked = False
    for tx, ty in targets:
        x, y = W.X0 + tx, W.Y0 + ty
        want = _visible_python(cams, buildings, x, y, 1.5)
        got = A.cameras_visible(sa_conn, *W.lonlat(tx, ty), h=1.5)
        assert {g["camera_id"] for g in got} == want, (tx, ty)
        saw_blocked |= (tx, ty) == (90, 100) and "CAM0001" not in want
    assert saw_blocked  # the wall hides (90, 100) from CAM0001 ...
    assert "CAM0001" in {
        g["camera_id"] for g in A.cameras_visible(sa_conn, *W.lonlat(110, 100))
    }  # ... the shed not
    online = A.cameras_visible(sa_conn, *W.lonlat(300, 300), only_online=True)
    assert "CAM0002" not in {g["camera_id"] for g in online}


# --- population ---------------------------------------------------------------------------------------
def _population_python(level: str) -> dict[str, dict[str, int]]:
    year = datetime.now(UTC).year
    where = {
        b: (g, c)
        for b, poly, _, _ in W.BUILDINGS
        for g, (gpoly, c, _) in W.GRIDS.items()
        if gpoly.contains(poly.representative_point())
    }
    out: dict[str, dict[str, int]] = {}
    for p in W.population_rows():
        key = {
            "building": p["building_id"],
            "grid": where[p["building_id"]][0],
            "community": where[p["building_id"]][1],
        }[level]
        o = out.setdefault(
            key,
            dict.fromkeys(
                (
                    "total",
                    "registered",
                    "floating",
                    "age_60_plus",
                    "age_80_plus",
                    "children_under_14",
                    "special_care",
                ),
                0,
            ),
        )
        age = year - p["birth_year"]
        o["total"] += 1
        o[p["residence"]] += 1
        o["age_60_plus"] += age >= 60
        o["age_80_plus"] += age >= 80
        o["children_under_14"] += age < 14
        o["special_care"] += bool(p["care_flags"])
    return out


@pytest.mark.parametrize("level", ["building", "grid", "community"])
def test_population_full_and_suppressed(sa_conn, level: str) -> None:  # noqa: ANN001
    want = _population_python(level)
    full = {r["id"]: r for r in A.population(sa_conn, level, privileged=True)}
    public = {r["id"]: r for r in A.population(sa_conn, level)}
    for key, counts in want.items():
        assert {k: full[key][k] for k in counts} == counts
        for k, v in counts.items():
            small = v < 5 or (
                k in ("registered", "floating") and min(counts["registered"], counts["floating"]) < 5
            )
            small |= k in ("registered", "floating") and counts["total"] < 5
            if small:
                assert public[key][k] is None and k in public[key]["suppressed"], (key, k)
            else:  # published, or withheld by complementary suppression (migration 0006_privacy)
                assert public[key][k] in (v, None), (key, k)
                assert (public[key][k] is None) == (k in public[key]["suppressed"]), (key, k)
    one = A.population(sa_conn, level, id=next(iter(want)))
    assert len(one) == 1


def test_population_roles(sa_conn) -> None:  # noqa: ANN001
    assert A.population(sa_conn, "building", privileged=True)  # SET LOCAL ROLE onemap_privileged inside
    sa_conn.execute(text("SET LOCAL ROLE onemap_reader"))
    assert A.population(sa_conn, "building")
    with pytest.raises(Exception, match="permission denied"):
        sa_conn.execute(text("SELECT count(*) FROM restricted.population_by_building_full"))
    # onemap_api (the server) may read person-level rows only through SET LOCAL ROLE:
    # tests/security/test_database_roles.py


# --- KPIs ------------------------------------------------------------------------------------------
def test_kpis(sa_conn) -> None:  # noqa: ANN001
    now = W.DAY + timedelta(minutes=8)  # 08:08 local: W001 reported recently
    _insert_event(sa_conn, "EK0001", W.X0 + 10, W.Y0 + 10, reported=now - timedelta(minutes=5))
    k = A.kpis(sa_conn, now=now)
    assert k["events_today"] == {"reported": 1}
    assert k["patrollers_on_duty"] == 0  # every latest fix is after `now` or older than 10 min
    k = A.kpis(sa_conn, now=W.DAY + timedelta(hours=2, minutes=5))
    assert k["patrollers_on_duty"] == 1  # W002's fix at 02:00:10
    assert (k["cameras_online"], k["cameras_total"]) == (2, 3)
    assert k["open"] == 6
    assert k["alarms_today"] == 2
