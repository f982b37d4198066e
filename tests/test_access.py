"""Walking access to facilities (migration 0007_access, gis/access.py) against the real PostGIS +
pgRouting, with every figure recomputed independently: networkx shortest paths on the same
road_edges (read back), shapely for the straight legs, a Python greedy and a brute force for the
candidate sites, a Python version of the suppression rule.

Every test runs in one transaction on the tiny district and rolls back.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime

import networkx as nx
import numpy as np
import pytest
import shapely
import sqlalchemy as sa

from gis import access
from tests import gis_world as W

THIS_YEAR = datetime.now(UTC).year  # population_ref_year() is the Asia/Shanghai year; not at New Year


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


# --------------------------------------------------------------------------------- world helpers
def _roads(conn: sa.Connection, roads: list[tuple[str, list[tuple[float, float]]]]) -> None:
    conn.execute(sa.text("DELETE FROM roads"))
    for rid, pts in roads:
        wkt = "LINESTRING(" + ", ".join(f"{W.X0 + x} {W.Y0 + y}" for x, y in pts) + ")"
        conn.execute(sa.text(
            "INSERT INTO roads (id, class, bridge, geom) VALUES (:id, 'residential', false, "
            "ST_Multi(ST_Transform(ST_SetSRID(ST_GeomFromText(:wkt), 4548), 4490)))"), {"id": rid, "wkt": wkt})
    conn.execute(sa.text("SELECT road_graph_rebuild()"))


def _facility(conn: sa.Connection, fid: str, kind: str, x: float, y: float) -> None:
    conn.execute(sa.text(
        "INSERT INTO facilities (id, kind, name, geom) VALUES (:id, :kind, :id, "
        "ST_Transform(ST_SetSRID(ST_MakePoint(:x, :y), 4548), 4490))"),
        {"id": fid, "kind": kind, "x": W.X0 + x, "y": W.Y0 + y})


def _building(conn: sa.Connection, bid: str, x: float, y: float, community: str | None = "C01") -> None:
    wkt = shapely.box(W.X0 + x - 6, W.Y0 + y - 5, W.X0 + x + 6, W.Y0 + y + 5).wkt
    conn.execute(sa.text(
        "INSERT INTO buildings (id, community_id, geom) VALUES (:id, :c, "
        "ST_Multi(ST_Transform(ST_SetSRID(ST_GeomFromText(:wkt), 4548), 4490)))"),
        {"id": bid, "c": community, "wkt": wkt})


def _people(conn: sa.Connection, building: str, n: int, age: int = 40, flags: str = "{}", tag: str = "") -> None:
    for k in range(n):
        conn.execute(sa.text(
            "INSERT INTO restricted.persons (person_id, building_id, birth_year, residence, care_flags) "
            "VALUES (:p, :b, :y, 'registered', CAST(:f AS text[]))"),
            {"p": f"PX{building}{tag}{k:03d}", "b": building, "y": THIS_YEAR - age, "f": flags})


def _graph(conn: sa.Connection) -> tuple[nx.MultiGraph, np.ndarray, np.ndarray]:
    """The road graph read back (networkx, weight length_m) and the vertices (ids, xy)."""
    g = nx.MultiGraph()
    for e in conn.execute(sa.text("SELECT id, source, target, length_m FROM road_edges")).mappings():
        g.add_edge(e["source"], e["target"], key=e["id"], length_m=e["length_m"])
    rows = conn.execute(sa.text("SELECT id, ST_X(geom_4548), ST_Y(geom_4548) FROM road_vertices ORDER BY id")).all()
    ids = np.array([r[0] for r in rows])
    xy = np.array([[r[1], r[2]] for r in rows])
    return g, ids, xy


def _nearest(ids: np.ndarray, xy: np.ndarray, pt: shapely.Point) -> tuple[int, float]:
    d = np.hypot(xy[:, 0] - pt.x, xy[:, 1] - pt.y)
    k = int(np.lexsort((ids, d))[0])
    return int(ids[k]), float(d[k])


def _points(conn: sa.Connection, table: str, where: str = "true") -> dict[str, shapely.Geometry]:
    rows = conn.execute(sa.text(f"SELECT id, ST_AsBinary(geom_4548) FROM {table} WHERE {where}")).all()  # noqa: S608
    return {r[0]: shapely.from_wkb(bytes(r[1])) for r in rows}


def _w(a: int, b: int, d: dict) -> float:
    return min(x["length_m"] for x in d.values())


def _independent_times(conn: sa.Connection, kind: str) -> dict[str, float | None]:
    """building id -> walking metres to the nearest facility of kind, by networkx + shapely."""
    g, ids, xy = _graph(conn)
    best: dict[int, float] = {}
    for geom in _points(conn, "facilities", f"kind = '{kind}'").values():
        v, leg = _nearest(ids, xy, geom)
        dist = nx.single_source_dijkstra_path_length(g, v, weight=_w) if v in g else {v: 0.0}
        for node, m in dist.items():
            best[node] = min(best.get(node, np.inf), leg + m)
    out: dict[str, float | None] = {}
    for bid, geom in _points(conn, "buildings").items():
        v, leg = _nearest(ids, xy, shapely.point_on_surface(geom))
        out[bid] = leg + best[v] if v in best else None
    return out


GRID_ROADS = [(f"H{j}", [(0.0, 150.0 * j), (900.0, 150.0 * j)]) for j in range(4)] + \
             [(f"V{i}", [(150.0 * i, 0.0), (150.0 * i, 450.0)]) for i in range(7)]


# ----------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("seed", [5, 23])
def test_building_times_equal_networkx(db: sa.Connection, seed: int) -> None:
    rng = np.random.default_rng(seed)
    extra = [(f"RZ{k}", [tuple(map(float, rng.uniform(0, 900, 2))) for _ in range(2)]) for k in range(5)]
    _roads(db, GRID_ROADS + extra + [("ISLAND", [(1300.0, 1300.0), (1400.0, 1300.0)])])
    for k, (x, y) in enumerate(rng.uniform(0, 900, (3, 2))):
        _facility(db, f"FC{k}", "clinic", float(x), float(y) / 2)
    _facility(db, "FS0", "school", 75.0, 75.0)
    for k, (x, y) in enumerate(rng.uniform(20, 880, (25, 2))):
        _building(db, f"BZ{k:03d}", float(x), float(y) / 2)
    _building(db, "BZISL", 1350.0, 1310.0)  # nearest vertex on the island: unreachable
    expected = _independent_times(db, "clinic")
    got = {r["building_id"]: r for r in access.building_times(db, "clinic", 0.8)}
    assert set(got) == set(expected)
    for bid, m in expected.items():
        if m is None:
            assert got[bid]["walk_m"] is None and got[bid]["walk_s"] is None, bid
        else:
            assert got[bid]["walk_m"] == pytest.approx(m, abs=1e-6), bid
            assert got[bid]["walk_s"] == pytest.approx(m / 0.8, abs=1e-5)
    assert got["BZISL"]["walk_m"] is None
    # the nearest facility is one of the clinics; the school is another kind
    assert {r["facility_id"] for r in got.values()} <= {"FC0", "FC1", "FC2", None}


def test_access_answer_lists_uncovered_buildings(db: sa.Connection) -> None:
    _roads(db, GRID_ROADS)
    _facility(db, "FP0", "police", 0.0, 0.0)
    _building(db, "BZNEAR", 20.0, 10.0)
    _building(db, "BZFAR", 880.0, 440.0)
    times = _independent_times(db, "police")
    out = access.access(db, "police", minutes=5, speed=1.2)
    uncovered = {u["building_id"]: u for u in out["uncovered"]}
    assert "BZFAR" in uncovered and "BZNEAR" not in uncovered
    assert uncovered["BZFAR"]["walk_min"] == pytest.approx(times["BZFAR"] / 1.2 / 60, abs=0.01)
    assert {u for u, m in times.items() if m is None or m > 300 * 1.2} == set(uncovered)
    # no people in the building lists; communities=false leaves the costly figures out
    assert set(uncovered["BZFAR"]) == {"building_id", "community_id", "walk_min"}
    assert access.access(db, "police", 5, 1.2, communities=False)["communities"] == []
    with pytest.raises(ValueError, match="speed"):
        access.access(db, "police", 5, speed=1.0)
    with pytest.raises(ValueError, match="minutes"):
        access.access(db, "police", 7, speed=1.2)


def _py_publish(n: int, counts: list[int]) -> list[bool]:
    out, prev = [], 0
    for c in counts:
        ok = all(x == 0 or x >= 5 for x in (c, n - c, c - prev))
        out.append(ok)
        prev = c if ok else prev
    return out


@pytest.mark.parametrize("seed", range(6))
def test_publish_rule_equals_python(db: sa.Connection, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 40))
    counts = sorted(int(c) for c in rng.integers(0, n + 1, 5))
    got = db.execute(sa.text("SELECT access_publish(:n, CAST(:c AS integer[]))"), {"n": n, "c": counts}).scalar_one()
    assert got == _py_publish(n, counts)
    assert db.execute(sa.text("SELECT access_publish(20, ARRAY[5, 8, 14])")).scalar_one() == [True, False, True]
    assert db.execute(sa.text("SELECT access_publish(12, ARRAY[0, 3, 12, 12])")).scalar_one() == \
        [True, False, True, True]  # nobody / everyone may be said, 3 may not


def test_community_counts_suppressed_like_the_population_views(db: sa.Connection) -> None:
    _roads(db, GRID_ROADS)
    _facility(db, "FE0", "elderly_care", 0.0, 0.0)
    db.execute(sa.text("DELETE FROM restricted.persons"))
    for bid, x, y in [("BZA", 30, 10), ("BZB", 160, 20), ("BZC", 460, 160), ("BZD", 880, 440)]:
        _building(db, bid, x, y, "C01")
    _people(db, "BZA", 9)
    _people(db, "BZA", 3, age=85, tag="o")  # 3 aged 80+: never published
    _people(db, "BZB", 8, flags="{disabled}")
    _people(db, "BZC", 12, flags="{low_income}")
    _people(db, "BZD", 6)
    _people(db, "BZD", 2, flags="{disabled}", tag="d")
    times = _independent_times(db, "elderly_care")
    persons = db.execute(sa.text(
        "SELECT p.building_id, p.birth_year, p.care_flags, b.community_id FROM restricted.persons p "
        "JOIN buildings b ON b.id = p.building_id")).all()
    thresholds = sorted({s * 60 * m for s in access.SPEEDS for m in access.MINUTES})
    rows = {(r["community_id"], r["grp"]): r for r in access.community_access(db, "elderly_care", 0.8)}
    view = {r[0]: r[1:] for r in db.execute(sa.text(
        "SELECT community_id, total, age_80_plus FROM population_by_community")).all()}
    member = {"total": lambda p: True, "age_80_plus": lambda p: THIS_YEAR - p[1] >= 80,
              "disabled": lambda p: "disabled" in p[2], "low_income": lambda p: "low_income" in p[2]}
    for community in ("C01", "C02"):
        for grp, is_member in member.items():
            mine = [p for p in persons if p[3] == community and is_member(p)]
            counts = [sum(1 for p in mine if times[p[0]] is not None and times[p[0]] <= t) for t in thresholds]
            ok = _py_publish(len(mine), counts)
            r = rows[(community, grp)]
            for m in access.MINUTES:
                i = thresholds.index(0.8 * 60 * m)
                assert r[f"within_{m}"] == (counts[i] if ok[i] else None), (community, grp, m)
                assert (f"within_{m}" in r["suppressed"]) == (not ok[i])
            if grp in ("total", "age_80_plus"):
                assert r["residents"] == view[community][0 if grp == "total" else 1]
            else:
                assert r["residents"] == (len(mine) if len(mine) >= 5 else None)
    # the hand-made facts: 3 people aged 80+, 10 disabled split 8 near / 2 far
    assert rows[("C01", "age_80_plus")]["residents"] is None
    assert all(rows[("C01", "age_80_plus")][f"within_{m}"] is None for m in access.MINUTES)
    assert all(rows[("C01", "disabled")][f"within_{m}"] is None for m in access.MINUTES)  # 10 - 8 < 5
    assert rows[("C01", "total")]["share_15"] is None or 0 < rows[("C01", "total")]["share_15"] < 1


def _py_greedy(cover: dict[int, set[str]], w: dict[str, int], n: int) -> list[tuple[int, int, int]]:
    done: set[str] = set()
    out = []
    for _ in range(n):
        gains = {c: sum(w[b] for b in bs - done) for c, bs in cover.items()}
        if not gains:
            break
        best = min(gains, key=lambda c: (-gains[c], c))
        if gains[best] < 5:
            break
        out.append((best, gains[best], len(cover[best] - done)))
        done |= cover[best]
    return out


def test_sites_greedy_equals_independent(db: sa.Connection) -> None:
    _roads(db, GRID_ROADS)
    _facility(db, "FT0", "service_terminal", 0.0, 0.0)
    db.execute(sa.text("DELETE FROM restricted.persons"))
    rng = np.random.default_rng(9)
    pos = rng.uniform(10, 890, (18, 2))
    for k, (x, y) in enumerate(pos):
        _building(db, f"BZS{k:02d}", float(x), float(y) / 2)
        _people(db, f"BZS{k:02d}", int(rng.integers(1, 30)))
    reach = 1.2 * 60 * 5
    times = _independent_times(db, "service_terminal")
    w = dict(db.execute(sa.text("SELECT building_id, count(*) FROM restricted.persons GROUP BY 1")).all())
    g, ids, xy = _graph(db)
    cover: dict[int, set[str]] = {}
    for bid, geom in _points(db, "buildings").items():
        if bid not in w or (times[bid] is not None and times[bid] <= reach):
            continue
        v, leg = _nearest(ids, xy, shapely.point_on_surface(geom))
        if leg > reach:
            continue
        for node in nx.single_source_dijkstra_path_length(g, v, cutoff=reach - leg, weight=_w):
            cover.setdefault(int(node), set()).add(bid)
    expected = _py_greedy(cover, w, 6)
    got = access.sites(db, "service_terminal", minutes=5, speed=1.2, n=6)
    assert [(s["vertex_id"], s["buildings_added"]) for s in got] == [(c, nb) for c, _, nb in expected]
    assert [s["residents_added"] for s in got] == [int(round(gain / 5) * 5) for _, gain, _ in expected]
    assert len(got) >= 3
    # greedy's first two sites reach at least (1 - 1/e) of the best pair (brute force)
    best_pair = max(sum(w[b] for b in cover[a] | cover[b]) for a, b in itertools.combinations(cover, 2))
    assert expected[0][1] + expected[1][1] >= (1 - 1 / np.e) * best_pair
    vid = got[0]["vertex_id"]
    lon, lat = db.execute(sa.text("SELECT ST_X(ST_Transform(geom_4548, 4490)), ST_Y(ST_Transform(geom_4548, 4490)) "
                                  "FROM road_vertices WHERE id = :v"), {"v": vid}).one()
    assert (got[0]["lon"], got[0]["lat"]) == pytest.approx((lon, lat))


def test_isochrone_edges_bands(db: sa.Connection) -> None:
    _roads(db, GRID_ROADS)
    _facility(db, "FK0", "convenience_store", 450.0, 150.0)
    fc = access.isochrone_edges(db, "convenience_store", 1.2)
    assert fc["features"]
    g, ids, xy = _graph(db)
    v, leg = _nearest(ids, xy, _points(db, "facilities", "id = 'FK0'")["FK0"])
    dist = nx.single_source_dijkstra_path_length(g, v, weight="length_m")
    ends = dict(((e[0]), (e[1], e[2])) for e in db.execute(sa.text("SELECT id, source, target FROM road_edges")).all())
    for f in fc["features"]:
        s, t = ends[f["id"]]
        m = min(dist.get(s, np.inf), dist.get(t, np.inf)) + leg
        assert f["properties"]["minutes"] == pytest.approx(m / 1.2 / 60, abs=0.01)
        band = f["properties"]["band"]
        assert band == next((b for b in (5, 10, 15) if m / 1.2 / 60 <= b), None) or \
            abs(m / 1.2 / 60 - (band or 15)) < 0.01


def test_sql_refuses_unpublished_parameters(db: sa.Connection) -> None:
    for stmt in ("SELECT * FROM access_by_community('clinic', 1.0)",
                 "SELECT * FROM access_sites('clinic', 1.2, 7, 3)",
                 "SELECT * FROM access_sites('nope', 1.2, 5, 3)"):
        with pytest.raises(sa.exc.DBAPIError, match="must be|unknown"), db.begin_nested():
            db.execute(sa.text(stmt))


def test_facilities_loader(conn, tiny_loaded, tmp_path) -> None:  # noqa: ANN001
    import geopandas as gpd

    from gis.loaders.facilities import load_facilities
    from gis.loaders.io import Mapping

    rows = [("FS001", "service_station", "站", None, (50, 50)),   # inside B000001, in C01
            ("FK001", "convenience_store", "店", "B000004", (320, 10)),  # declared building kept
            ("FQ001", "spaceport", "坏", None, (10, 10))]  # unknown kind: rejected, named
    gdf = gpd.GeoDataFrame({"id": [r[0] for r in rows], "kind": [r[1] for r in rows], "name": [r[2] for r in rows],
                            "building_id": [r[3] for r in rows], "opening": ["8-20"] * 3},
                           geometry=[shapely.Point(W.xy(*r[4])) for r in rows], crs="EPSG:4548")
    path = tmp_path / "facilities.gpkg"
    gdf.to_file(path, layer="facilities", driver="GPKG", engine="pyogrio")
    report = load_facilities(conn, path, Mapping())
    assert report.loaded == 2
    assert [(r.feature_id, r.field, r.code) for r in report.rejects] == [("FQ001", "kind", "unknown_value")]
    got = {r[0]: r[1:] for r in conn.execute(
        "SELECT id, community_id, building_id FROM facilities ORDER BY id")}
    assert got == {"FS001": ("C01", "B000001"), "FK001": ("C02", "B000004")}
