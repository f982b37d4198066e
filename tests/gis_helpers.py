"""Fixtures and helpers shared by tests/test_gis_*.py (import the fixtures into a test module)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests import gis_world


def libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.fixture()
def conn(pg_url: str) -> Iterator[psycopg.Connection]:
    """A psycopg connection (autocommit off) rolled back after the test."""
    with psycopg.connect(libpq(pg_url)) as c:
        yield c
        c.rollback()


@pytest.fixture(scope="session")
def tiny_delivery(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("tiny-delivery")
    gis_world.write_delivery(root, defects=True)
    yield root
    shutil.rmtree(root, ignore_errors=True)


_FINGERPRINT = """SELECT (SELECT string_agg(id, ',' ORDER BY id) FROM buildings),
                          (SELECT count(*) FROM events), (SELECT count(*) FROM event_status_history),
                          (SELECT count(*) FROM gps_fixes), (SELECT count(*) FROM worker_positions),
                          (SELECT count(*) FROM alarms), (SELECT count(*) FROM restricted.persons),
                          (SELECT count(*) FROM cameras), (SELECT count(*) FROM shift_tracks)"""
_loaded: dict[str, tuple[object, tuple]] = {}


@pytest.fixture(scope="module")
def tiny_loaded(pg_url: str, tiny_delivery: Path):  # noqa: ANN201 - LoadReport
    """The tiny district loaded (with its defects rejected) into the session database.

    Loaded once per session and re-loaded only when a test module left other data behind (tests
    roll back or clean up what they write; the sample integration test replaces everything)."""
    from gis.loaders import load_sample

    url = libpq(pg_url)
    with psycopg.connect(url) as c:
        state = tuple(c.execute(_FINGERPRINT).fetchone())
    cached = _loaded.get(url)
    if cached and cached[1] == state:
        return cached[0]
    report = load_sample(tiny_delivery, url=url)
    with psycopg.connect(url) as c:
        _loaded[url] = (report, tuple(c.execute(_FINGERPRINT).fetchone()))
    return report


@pytest.fixture()
def sa_conn(pg_url: str, tiny_loaded):  # noqa: ANN001, ANN201 - SQLAlchemy Connection
    """A SQLAlchemy connection on the loaded tiny district; everything it writes is rolled back."""
    from sqlalchemy import create_engine

    engine = create_engine(pg_url)
    with engine.connect() as c:
        c.begin()
        yield c
        c.rollback()
    engine.dispose()


def to_4548(lon: float, lat: float) -> tuple[float, float]:
    from pyproj import Transformer

    x, y = Transformer.from_crs("EPSG:4490", "EPSG:4548", always_xy=True).transform(lon, lat)
    return float(x), float(y)
