"""Walking access on the generated sample (seed 7): the facilities load, building times equal
networkx on the sample's own road graph (read back) for a subset of buildings, every published
community count obeys the suppression rule, and notebooks/access.ipynb runs top to bottom.

Reads the full sample of the session (tests/fixtures/gis.py: `full_sample`, GPS limited to 1,000 fixes)."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import nbformat
import networkx as nx
import numpy as np
import pytest
import shapely
import sqlalchemy as sa
from nbclient import NotebookClient

from gis import access

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "access.ipynb"


@pytest.fixture(scope="module")
def sample_loaded(full_sample: tuple[str, object]):  # noqa: ANN201 - LoadReport
    """The full sample, loaded once per session into its own database (tests/fixtures/gis.py)."""
    return full_sample[1]


@pytest.fixture()
def db(sample_loaded, sample_url: str):  # noqa: ANN001, ANN201
    engine = sa.create_engine(sample_url)
    with engine.connect() as conn:
        yield conn
    engine.dispose()


def test_facilities_loaded(sample_loaded, sample_dir: Path, db: sa.Connection) -> None:  # noqa: ANN001
    layer = next(x for x in sample_loaded.layers if x.layer == "facilities")
    delivered = gpd.read_file(sample_dir / "clean" / "facilities.gpkg")
    assert layer.rejects == [] and layer.loaded == len(delivered)
    rows = db.execute(sa.text("SELECT kind, count(*), count(DISTINCT community_id), count(building_id) "
                              "FROM facilities GROUP BY kind")).all()
    by_kind = {r[0]: r[1:] for r in rows}
    n_comm = db.execute(sa.text("SELECT count(*) FROM communities")).scalar_one()
    for kind in ("service_station", "service_terminal"):  # one per community, every community
        assert by_kind[kind] == (n_comm, n_comm, n_comm)


def test_building_times_equal_networkx_on_the_sample(db: sa.Connection) -> None:
    g = nx.MultiGraph()
    for e in db.execute(sa.text("SELECT id, source, target, length_m FROM road_edges")).all():
        g.add_edge(e[1], e[2], key=e[0], length_m=e[3])
    vs = db.execute(sa.text("SELECT id, ST_X(geom_4548), ST_Y(geom_4548) FROM road_vertices")).all()
    ids = np.array([v[0] for v in vs])
    xy = np.array([[v[1], v[2]] for v in vs])

    def nearest(pt: shapely.Point) -> tuple[int, float]:
        d = np.hypot(xy[:, 0] - pt.x, xy[:, 1] - pt.y)
        k = int(np.lexsort((ids, d))[0])
        return int(ids[k]), float(d[k])

    def weight(a: int, b: int, d: dict) -> float:
        return min(x["length_m"] for x in d.values())

    kind = "elderly_care"
    best: dict[int, float] = {}
    for (wkb,) in db.execute(sa.text("SELECT ST_AsBinary(geom_4548) FROM facilities WHERE kind = :k"), {"k": kind}):
        v, leg = nearest(shapely.from_wkb(bytes(wkb)))
        for node, m in nx.single_source_dijkstra_path_length(g, v, weight=weight).items():
            best[node] = min(best.get(node, np.inf), leg + m)
    got = {r["building_id"]: r["walk_m"] for r in access.building_times(db, kind, 1.2)}
    rng = np.random.default_rng(16)
    subset = sorted(rng.choice(sorted(got), 300, replace=False))
    rows = db.execute(sa.text("SELECT id, ST_AsBinary(geom_4548) FROM buildings WHERE id = ANY(:ids)"),
                      {"ids": subset}).all()
    reachable = 0
    for bid, wkb in rows:
        v, leg = nearest(shapely.point_on_surface(shapely.from_wkb(bytes(wkb))))
        expected = leg + best[v] if v in best else None
        if expected is None:
            assert got[bid] is None, bid
        else:
            assert got[bid] == pytest.approx(expected, abs=1e-6), bid
            reachable += 1
    assert reachable >= 0.9 * len(rows)  # the sample's graph is (nearly) connected


def test_published_counts_obey_the_rule(db: sa.Connection) -> None:
    view = dict(db.execute(sa.text("SELECT community_id, total FROM population_by_community")).all())
    for speed in access.SPEEDS:
        rows = access.community_access(db, "service_terminal", speed)
        assert {r["grp"] for r in rows} == set(access.GROUPS)
        for r in rows:
            published = [r[f"within_{m}"] for m in access.MINUTES if r[f"within_{m}"] is not None]
            def fine(x: int) -> bool:
                return x == 0 or x >= 5

            assert all(fine(c) for c in published)
            assert all(fine(b - a) for a, b in zip(published, published[1:], strict=False))
            if r["residents"] is not None:
                assert all(fine(r["residents"] - c) for c in published)
            if r["grp"] == "total":
                assert r["residents"] == view[r["community_id"]]
        # most communities publish their residents' share within 15 minutes of a terminal
        totals = [r for r in rows if r["grp"] == "total"]
        assert sum(r["share_15"] is not None for r in totals) >= len(totals) // 2


def test_sites_on_the_sample(db: sa.Connection) -> None:
    sites = access.sites(db, "elderly_care", minutes=10, speed=0.8, n=5)
    assert 1 <= len(sites) <= 5
    gains = [s["residents_added"] for s in sites]
    assert gains == sorted(gains, reverse=True) and all(g % 5 == 0 and g >= 5 for g in gains)


def test_notebook_runs_on_the_sample(sample_loaded, use_sample_database: str) -> None:  # noqa: ANN001
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent.parent)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 5


def test_sample_facility_names_hold_no_personal_data(sample_dir: Path) -> None:
    f = gpd.read_file(sample_dir / "clean" / "facilities.gpkg")
    assert not f["name"].str.contains(r"\d{6,}|1[3-9]\d{9}").any()
