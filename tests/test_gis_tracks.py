"""Patrol analytics (mileage, tracks, check-ins, road coverage, geofence alarms) against Python."""

from __future__ import annotations

import math
from datetime import date, timedelta

import pytest
import shapely
from pyproj import Transformer
from sqlalchemy import text

from gis import analytics as A
from tests import gis_world as W

DAY = date(2026, 3, 2)  # local day of gis_world.DAY
TO_4548 = Transformer.from_crs("EPSG:4490", "EPSG:4548", always_xy=True)


def _fixes_by_worker() -> dict[str, list[tuple[float, float, float, float]]]:
    """(t seconds, x, y, accuracy) per worker from the delivered rows (loader-rejected ones excluded)."""
    out: dict[str, list] = {}
    for f in W.gps_rows():
        x, y = TO_4548.transform(f["lon"], f["lat"])
        out.setdefault(f["worker_id"], []).append((f["t"].timestamp(), x, y, f["accuracy"]))
    return {w: sorted(v) for w, v in out.items()}


def clean_python(fixes, max_speed=15.0, jitter_k=1.0, min_step=3.0, max_gap=600.0, reanchor_n=3):  # noqa: ANN001, ANN201
    """Independent re-implementation of the documented cleaning (docs/postgis.md "Tracks")."""
    out = []
    anchor = None
    prev_t = None
    n_spike = 0
    seg = 0
    for t, x, y, acc in fixes:
        if anchor is None:
            anchor, prev_t, seg = (t, x, y), t, 1
            out.append(("start", 0.0, seg, x, y))
            continue
        if t - prev_t > max_gap:
            seg += 1
            n_spike = 0
            anchor, prev_t = (t, x, y), t
            out.append(("gap", 0.0, seg, x, y))
            continue
        prev_t = t
        d = math.hypot(x - anchor[1], y - anchor[2])
        dt = t - anchor[0]
        if dt <= 0 or d / dt > max_speed:
            n_spike += dt > 0
            if n_spike >= reanchor_n:
                seg += 1
                n_spike = 0
                anchor = (t, x, y)
                out.append(("reanchor", 0.0, seg, x, y))
            else:
                out.append(("jitter" if dt <= 0 else "spike", 0.0, seg, x, y))
            continue
        n_spike = 0
        if d < max(min_step, jitter_k * (acc or 0)):
            out.append(("jitter", 0.0, seg, x, y))
        else:
            anchor = (t, x, y)
            out.append(("kept", d, seg, x, y))
    return out


def test_mileage_filters_spikes_and_jitter(sa_conn) -> None:  # noqa: ANN001
    rows = {r["worker_id"]: r for r in A.patrol_mileage(sa_conn, DAY)}
    fixes = _fixes_by_worker()
    for worker, fx in fixes.items():
        cleaned = clean_python(fx)
        assert rows[worker]["km"] == pytest.approx(sum(c[1] for c in cleaned) / 1000, abs=1e-9)
        assert rows[worker]["spikes"] == sum(c[0] == "spike" for c in cleaned)
        assert rows[worker]["jitter"] == sum(c[0] == "jitter" for c in cleaned)
        assert rows[worker]["fixes"] == len(fx)
    # by construction: W001 walks 160 m + 80 m; the 500 m spike and standing jitter add nothing
    assert rows["W001"]["km"] == pytest.approx(0.240, abs=1e-6)
    assert rows["W001"]["spikes"] == 1
    assert rows["W003"]["km"] == 0
    raw_km = (
        sum(math.dist(a[1:3], b[1:3]) for a, b in zip(fixes["W001"], fixes["W001"][1:], strict=False)) / 1000
    )
    assert raw_km > 1.2  # what a naive sum would have said
    assert A.patrol_mileage(sa_conn, DAY + timedelta(days=1)) == []
    assert [r["worker_id"] for r in A.patrol_mileage(sa_conn, DAY, worker_id="W002")] == ["W002"]


def test_track_geojson_and_czml(sa_conn) -> None:  # noqa: ANN001
    fc = A.patrol_track(sa_conn, "W001", W.DAY, W.DAY + timedelta(hours=1))
    (feat,) = fc["features"]
    line = shapely.geometry.shape(feat["geometry"])
    xs = [TO_4548.transform(x, y)[0] - W.X0 for x, y in line.coords]
    assert max(xs) == pytest.approx(260, abs=0.05)  # the spike at x = 570 is not a vertex (1e-7° ~ 1 cm)
    assert feat["properties"]["length_m"] == pytest.approx(240, abs=1e-6)
    vertices = [
        c for c in clean_python(_fixes_by_worker()["W001"]) if c[0] in ("start", "gap", "reanchor", "kept")
    ]
    assert len(line.coords) == len(vertices)
    czml = A.patrol_track(sa_conn, "W001", W.DAY, W.DAY + timedelta(hours=1), fmt="czml")
    assert czml[0]["id"] == "document" and czml[0]["clock"]["interval"].startswith("2026-03-02T00:00:00")
    pos = czml[1]["position"]["cartographicDegrees"]
    assert len(pos) == 4 * len(vertices) and pos[0] == 0.0
    assert pos[-4] == pytest.approx(360.0)  # the last kept fix: back at x = 260 m after 6 min


def test_checkin_compliance_against_python(sa_conn) -> None:  # noqa: ANN001
    rows = {r["worker_id"]: r for r in A.checkin_compliance(sa_conn, DAY)}
    grid_of = {w: g for w, _, _, _, g in W.WORKERS}
    for worker, fx in _fixes_by_worker().items():
        required = sorted(c for c, _, _, g, _ in W.CHECKPOINTS if g == grid_of[worker])
        visited = sorted(
            c
            for c, cx, cy, g, r in W.CHECKPOINTS
            if g == grid_of[worker]
            and any(math.dist((x, y), (W.X0 + cx, W.Y0 + cy)) <= r for _, x, y, _ in fx)
        )
        row = rows[worker]
        assert (row["required"], row["visited"], row["visited_ids"]) == (len(required), len(visited), visited)
        assert row["missed"] == [c for c in required if c not in visited]
    assert rows["W001"]["share"] == 0.5 and rows["W001"]["missed"] == ["CP003"]
    stored = sa_conn.execute(text("SELECT checkpoint_id, worker_id FROM checkins ORDER BY 1")).fetchall()
    assert [tuple(r) for r in stored] == [("CP001", "W001"), ("CP002", "W002")]


def _roads_4548() -> shapely.Geometry:
    return shapely.union_all([shapely.LineString([W.xy(x, y) for x, y in line]) for _, line in W.ROADS])


def test_road_coverage_against_shapely(sa_conn) -> None:  # noqa: ANN001
    rows = {r["grid_id"]: r for r in A.road_coverage(sa_conn, DAY, buffer_m=20)}
    lines = []
    for fx in _fixes_by_worker().values():
        segs: dict[int, list] = {}
        for st, _, seg, x, y in clean_python(fx):
            if st in ("start", "gap", "reanchor", "kept"):
                segs.setdefault(seg, []).append((x, y))
        lines += [shapely.LineString(p) for p in segs.values() if len(p) > 1]
    cover = shapely.union_all([ln.buffer(20, quad_segs=8) for ln in lines])
    roads = _roads_4548()
    for g, (poly, _, _) in W.GRIDS.items():
        in_cell = roads.intersection(poly)
        assert rows[g]["road_m"] == pytest.approx(in_cell.length, abs=0.01)
        assert rows[g]["covered_m"] == pytest.approx(in_cell.intersection(cover).length, abs=0.05)
    assert rows["G001"]["share"] == pytest.approx(1.0, abs=1e-3)
    assert rows["G002"]["covered_m"] == pytest.approx(80, abs=0.05)


def test_road_coverage_long_track_in_runs(sa_conn) -> None:  # noqa: ANN001
    """Coverage buffers long tracks in runs of 32 fixes. Here the only road crossing is the step
    from the 32nd to the 33rd fix, which must belong to a run (lost, the road would be uncovered);
    the rest zigzags (and crosses itself) more than 20 m away from every road."""
    day = date(2026, 3, 5)
    t0 = W.DAY + timedelta(days=3, hours=2)
    pts = [(40.0 if k % 2 else 240.0, 160 + 200 * abs(math.sin(k * 0.37))) for k in range(31)]
    pts += [(270.0, 250.0), (330.0, 250.0)]  # fixes 31 and 32 (0-based): across R0002 (x = 300)
    pts += [(340.0 if k % 2 else 390.0, 160 + 200 * abs(math.sin(k * 0.23))) for k in range(67)]
    fixes = [(t0 + timedelta(seconds=30 * k), *W.lonlat(x, y)) for k, (x, y) in enumerate(pts)]
    sa_conn.execute(
        text("""INSERT INTO gps_fixes (device_id, worker_id, t, accuracy, geom)
                VALUES ('D001', 'W001', :t, 2.0, ST_SetSRID(ST_MakePoint(:lon, :lat), 4490))"""),
        [{"t": t, "lon": lon, "lat": lat} for t, lon, lat in fixes],
    )
    rows = {r["grid_id"]: r for r in A.road_coverage(sa_conn, day, buffer_m=20)}
    xy = [(t.timestamp(), *TO_4548.transform(lon, lat), 2.0) for t, lon, lat in fixes]
    kept = [(x, y) for st, _, _, x, y in clean_python(xy) if st in ("start", "gap", "reanchor", "kept")]
    assert len(kept) == len(pts)  # nothing cleaned away: the crossing is the 32nd step
    cover = shapely.LineString(kept).buffer(20, quad_segs=8)
    roads = _roads_4548()
    for g, (poly, _, _) in W.GRIDS.items():
        expected = roads.intersection(poly).intersection(cover).length
        assert rows[g]["covered_m"] == pytest.approx(expected, abs=0.2)
    assert sum(r["covered_m"] for r in rows.values()) == pytest.approx(40.0, abs=0.2)


def test_geofence_alarms_batch(sa_conn) -> None:  # noqa: ANN001
    got = {
        (a["kind"], a["worker_id"], a["geofence_id"]): a for a in A.alarms(sa_conn, W.DAY - timedelta(days=1))
    }
    assert set(got) == {("left_patrol_area", "W001", "GF001"), ("no_parking_dwell", "W003", "GF002")}
    # independent: W001's first fix farther than 10 m outside GF001 (x > 210) and W003's dwell
    fx = _fixes_by_worker()["W001"]
    first_out = min(t for t, x, y, _ in fx if x - W.X0 > 210 and t - fx[0][0] < 3600 and x - W.X0 < 400)
    assert got[("left_patrol_area", "W001", "GF001")]["t_start"].timestamp() == pytest.approx(first_out)
    dwell = got[("no_parking_dwell", "W003", "GF002")]
    assert (dwell["t_end"] - dwell["t_start"]) == timedelta(minutes=15)
    assert dwell["raised_at"] - dwell["t_start"] == timedelta(minutes=10)  # GF002 max_dwell_min
    # re-running the batch adds nothing
    assert A.geofence_alarms_batch(sa_conn, W.DAY - timedelta(hours=1), W.DAY + timedelta(hours=5)) == 0
    # a stricter tolerance does not duplicate the ongoing episode either (it extends/merges)
    params = A.GeofenceParams(min_outside_s=30, tolerance_m=0)
    assert (
        A.geofence_alarms_batch(sa_conn, W.DAY - timedelta(hours=1), W.DAY + timedelta(hours=5), params) == 0
    )
    # walking workers are not checked for no-parking unless asked
    sa_conn.execute(
        text("""INSERT INTO gps_fixes (device_id, worker_id, t, geom)
                            SELECT 'D002', 'W002', :t + make_interval(secs => 60 * g),
                                   ST_SetSRID(ST_MakePoint(:lon, :lat), 4490)
                              FROM generate_series(0, 20) g"""),
        {"t": W.DAY + timedelta(hours=4), "lon": W.lonlat(330, 330)[0], "lat": W.lonlat(330, 330)[1]},
    )
    span = (W.DAY + timedelta(hours=3), W.DAY + timedelta(hours=5))
    assert A.geofence_alarms_batch(sa_conn, *span) == 0
    assert (
        A.geofence_alarms_batch(sa_conn, *span, A.GeofenceParams(dwell_kinds=("vehicle", "grid_worker"))) == 1
    )


def test_shift_tracks_derived(sa_conn) -> None:  # noqa: ANN001
    rows = sa_conn.execute(
        text("""SELECT worker_id, day, n_fixes, n_spikes, length_m, ST_NumGeometries(geom)
                                     FROM shift_tracks ORDER BY worker_id""")
    ).fetchall()
    by = {r[0]: r for r in rows}
    assert by["W001"][1] == DAY and by["W001"][3] == 1
    assert by["W001"][4] == pytest.approx(240, abs=1e-6) and by["W001"][5] == 1
    assert by["W001"][2] == len(_fixes_by_worker()["W001"])
