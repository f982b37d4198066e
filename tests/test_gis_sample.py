"""Integration: the generated sample delivery (seed 7) loads completely, the analytics and the
notebooks run on it; the dirty delivery is reported.

Uses the session ``sample_dir`` fixture (tests/conftest.py) and loads only the first 200 000 GPS
fixes to stay within a couple of minutes.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import geopandas as gpd
import nbformat
import pandas as pd
import psycopg
import pytest
from nbclient import NotebookClient
from sqlalchemy import create_engine, text

from gis import analytics as A
from gis.loaders import load_layer, load_sample
from tests.gis_helpers import libpq

GPS_LIMIT = 200_000
NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


@pytest.fixture(scope="module")
def sample_loaded(sample_dir: Path, pg_url: str):  # noqa: ANN201 - LoadReport
    return load_sample(sample_dir, url=libpq(pg_url), gps_limit=GPS_LIMIT)


def test_clean_delivery_loads_without_rejects(sample_loaded, sample_dir: Path, pg_url: str) -> None:  # noqa: ANN001
    for layer in sample_loaded.layers:
        assert layer.rejects == [], (layer.layer, layer.rejects[:3])
        assert layer.loaded == layer.source_rows > 0, layer.layer
    clean = sample_dir / "clean"
    ids = set(gpd.read_file(clean / "buildings.gpkg", columns=["id"])["id"])
    with psycopg.connect(libpq(pg_url)) as c:
        db_ids = {r[0] for r in c.execute("SELECT id FROM buildings")}
        assert db_ids == ids  # the ids the 3D tiles carry
        n_events = c.execute("SELECT count(*) FROM events").fetchone()[0]
        unlocated = c.execute("SELECT count(*) FROM events WHERE grid_id IS NULL").fetchone()[0]
        n_hist = c.execute("SELECT count(*) FROM event_status_history").fetchone()[0]
        fixes = c.execute("SELECT count(*) FROM gps_fixes").fetchone()[0]
    assert n_events == len(pd.read_csv(clean / "events.csv", usecols=["id"]))
    assert unlocated <= 0.01 * n_events
    assert n_hist >= n_events
    assert fixes == GPS_LIMIT
    assert sample_loaded.derived["shift_tracks"] > 0 and sample_loaded.derived["worker_positions"] > 0


def test_analytics_on_the_sample(sample_loaded, pg_url: str) -> None:  # noqa: ANN001
    engine = create_engine(pg_url)
    try:
        with engine.connect() as c:
            last_event = c.execute(text("SELECT max(reported_at) FROM events")).scalar_one()
            last_fix = c.execute(text("SELECT max(t) FROM worker_positions")).scalar_one()
            n_grid = c.execute(text("SELECT count(*) FROM grid_cells")).scalar_one()
        end = last_event + timedelta(seconds=1)
        fc = A.event_density(engine, end - timedelta(days=30), end)
        assert len(fc["features"]) == n_grid and fc["meta"]["total"] > 0
        hs = A.event_hotspots(engine, end - timedelta(days=30), end, size_m=200)
        assert any(f["properties"]["gi_z"] is not None for f in hs["features"])
        assert A.sla(engine, "category", now=end)
        day = last_fix.astimezone(A.LOCAL_TZ).date()
        mileage = A.patrol_mileage(engine, day)
        assert mileage and all(0 <= r["km"] < 200 for r in mileage)
        assert A.road_coverage(engine, day)
        lon, lat = A.nearest_patrollers(engine, 117.39, 32.93, n=1, now=last_fix)[0]["lon"], 32.93
        assert A.cameras_visible(engine, lon, lat) is not None
        assert A.population(engine, "grid")
        assert A.kpis(engine, now=end)["cameras_total"] > 0
    finally:
        engine.dispose()


@pytest.mark.parametrize("name", ["event_hotspots_sla.ipynb", "patrol_coverage_mileage.ipynb"])
def test_notebook_runs_on_the_sample(name: str, sample_loaded, use_database: str) -> None:  # noqa: ANN001
    """Top to bottom against the loaded sample, with no error and at least one chart drawn."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS.parent)}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 4  # maps and charts were drawn


def test_dirty_buildings_reported(sample_loaded, sample_dir: Path, pg_url: str) -> None:  # noqa: ANN001
    dirty = sample_dir / "dirty"
    manifest = json.loads((dirty / "manifest.json").read_text())
    named = {
        d["feature_id"]: d["defect"]
        for d in manifest["defects"]
        if d["file"] == "buildings.gpkg" and d["feature_id"]
    }
    rep = load_layer(
        "buildings",
        dirty / "buildings.gpkg",
        url=libpq(pg_url),
        boundary=sample_dir / "clean" / "boundary.gpkg",
    ).layers[0]
    rejected = {r.feature_id: r.reason for r in rep.rejects}
    assert set(rejected) <= set(named)  # nothing valid is rejected
    for fid, defect in named.items():
        if defect in (
            "absurd_height",
            "duplicate",
            "missing_height",
            "unparsable_value",
            "outside_boundary",
            "zero_area",
        ):
            assert rejected.get(fid) == defect, (fid, defect)
    assert rep.loaded == rep.source_rows - len(rep.rejects)
    # a rejected (defective) new version never erases the building loaded from the clean delivery
    clean_ids = set(gpd.read_file(sample_dir / "clean" / "buildings.gpkg", columns=["id"])["id"])
    with psycopg.connect(libpq(pg_url)) as c:
        db_ids = {r[0] for r in c.execute("SELECT id FROM buildings")}
    assert (set(rejected) & clean_ids) <= db_ids


def test_sample_day_is_dispatchable(sample_loaded, pg_url: str) -> None:  # noqa: ANN001
    """The sample's roads make one connected graph (road ends that stop short of the road they
    meet are snapped, migration 0008_road_snap: 132 components without, the rest are driveways
    lying metres from any road); at a time inside a shift (its newest loaded fix) an event has
    available workers with road-network ETAs."""
    import sqlalchemy as sa

    from gis import dispatch

    engine = sa.create_engine(pg_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM road_edges")).scalar_one() > 100
        sizes = conn.execute(sa.text(
            "SELECT sum(e.length_m) FROM pgr_connectedComponents("
            "'SELECT id, source, target, length_m AS cost, length_m AS reverse_cost FROM road_edges') c "
            "JOIN road_edges e ON e.source = c.node GROUP BY c.component ORDER BY 1 DESC")).scalars().all()
        assert len(sizes) <= 20, len(sizes)
        assert sizes[0] >= 0.97 * sum(sizes)  # one network; the islands are single driveways
        # every island lies more than the snapping tolerance from the network
        assert conn.execute(sa.text(
            "WITH c AS (SELECT * FROM pgr_connectedComponents('SELECT id, source, target, length_m AS cost, "
            "length_m AS reverse_cost FROM road_edges')), "
            "ec AS (SELECT e.geom_4548, c.component FROM road_edges e JOIN c ON c.node = e.source) "
            "SELECT count(*) FROM ec a JOIN ec b ON a.component < b.component "
            "AND ST_DWithin(a.geom_4548, b.geom_4548, 2.0)")).scalar_one() == 0
        at = conn.execute(sa.text("SELECT max(t) FROM gps_fixes")).scalar_one()
        event_id = conn.execute(sa.text("SELECT id FROM events ORDER BY reported_at DESC LIMIT 1")).scalar_one()
        out = dispatch.suggestions(conn, event_id, at, n=3)
        conn.rollback()
    engine.dispose()
    assert out["suggestions"], f"no available worker at {at}"
    best = out["suggestions"][0]  # ranked by ETA, reachable first
    assert best["eta_s"] is not None and best["network_m"] > 0 and best["route"]["type"] == "LineString"
