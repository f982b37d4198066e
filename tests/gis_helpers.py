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


@pytest.fixture(scope="module")
def tiny_delivery(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("tiny-delivery")
    gis_world.write_delivery(root, defects=True)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def tiny_loaded(pg_url: str, tiny_delivery: Path):  # noqa: ANN201 - LoadReport
    """The tiny district loaded (with its defects rejected) into the session database."""
    from gis.loaders import load_sample

    return load_sample(tiny_delivery, url=libpq(pg_url))
