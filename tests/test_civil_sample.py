"""The civil-affairs figures on the loaded sample (issue 16): `load sample` brings the surveys, the
care households and visits and every camera's viewshed; the sample targets file gives on- and
off-track communities; some care households are overdue at the sample's end."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine

from gis import targets
from tests.gis_helpers import libpq

REPO = Path(__file__).resolve().parent.parent
SAMPLE_END = datetime(2026, 10, 31, 16, 0, tzinfo=UTC)  # 2026-11-01 00:00 local


@pytest.fixture(scope="module")
def sample_loaded(full_sample: tuple[str, object]):  # noqa: ANN201 - LoadReport
    """The full sample, loaded once per session into its own database (tests/fixtures/gis.py)."""
    return full_sample[1]


def test_load_sample_brings_civil_tables(sample_loaded, sample_dir: Path, sample_url: str) -> None:  # noqa: ANN001
    layers = {layer.layer: layer for layer in sample_loaded.layers}
    for name in ("surveys", "care_households", "care_visits"):
        assert layers[name].loaded > 0 and not layers[name].rejects, name
    with psycopg.connect(libpq(sample_url)) as c:
        n_cam, n_vs = c.execute("SELECT (SELECT count(*) FROM cameras), (SELECT count(*) FROM camera_viewsheds)"
                                ).fetchone()
        overdue = c.execute("SELECT sum(overdue) FROM care_by_community(%s) WHERE community_id IS NULL",
                            (SAMPLE_END,)).fetchone()[0]
    assert n_vs == n_cam == sample_loaded.derived["camera_viewsheds"]
    assert overdue is not None and 0 < overdue < layers["care_households"].loaded


def test_sample_targets_on_and_off_track(sample_loaded, sample_url: str) -> None:  # noqa: ANN001
    engine = create_engine(sample_url)
    with engine.connect() as c:
        doc = targets.evaluate(c, targets.load_targets(REPO / "data/targets/jiefang.yaml"), SAMPLE_END)
    engine.dispose()
    by_id = {t["id"]: t for t in doc["targets"]}
    for tid in ("security_down_30", "satisfaction_90"):
        sts = [r["status"] for r in by_id[tid]["results"]]
        good = sum(s in ("met", "on_track") for s in sts)
        assert 3 <= good <= len(sts) - 3, (tid, sts)
    access = by_id["terminal_access_10min"]["results"]
    assert any(r["current_value"] is not None for r in access)
    assert all(r["status"] == ("no_data" if r["current_value"] is None else
                               "met" if r["current_value"] >= 0.9 else "missed") for r in access)
    assert {c["status"] for c in doc["communities"]} >= {"on_track", "off_track"}
