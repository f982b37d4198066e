"""Shared fixtures. PostGIS tests run against a real throwaway cluster (never SQLite or mocks).

``ONEMAP_TEST_DATABASE_URL`` points the suite at an existing PostGIS instead; otherwise one
embedded cluster is initialised for the test session in a temporary folder and removed after.

Every fixture lives here or in a plugin module listed in ``pytest_plugins`` (``tests/fixtures/``);
test modules never import fixtures by name. Plain helper functions and constants stay in the
helper modules (``api_support``, ``gis_helpers``, ``gis_world``, ``tiles_fixtures``,
``viewer_district``) and are imported normally.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

#: fixture modules: the API database/tokens/tiles/client, the tiny PostGIS district
pytest_plugins = ["tests.fixtures.api", "tests.fixtures.gis"]


def make_world_readable_tmpdir(prefix: str) -> Path:
    """A temp dir the `postgres` OS user can traverse (pytest's tmp_path is 0700 root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """SQLAlchemy URL of a migrated PostGIS database for this test session."""
    from core.settings import DatabaseSettings
    from gis import migrate
    from gis.cluster import EmbeddedCluster

    external = os.environ.get("ONEMAP_TEST_DATABASE_URL")
    if external:
        url = external.replace("postgresql://", "postgresql+psycopg://", 1)
        migrate.upgrade(url)
        yield url
        return
    var_dir = make_world_readable_tmpdir("onemap-test-pg-")
    cluster = EmbeddedCluster(DatabaseSettings(var_dir=var_dir, database_url=None, pg_port=0))
    cluster.up()
    url = cluster.url()
    migrate.upgrade(url)
    try:
        yield url
    finally:
        cluster.stop()
        shutil.rmtree(var_dir, ignore_errors=True)


@pytest.fixture()
def use_database(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Point get_settings() (and so every library call) at the test database."""
    from core.settings import get_settings

    monkeypatch.setenv("ONEMAP_DATABASE_URL", pg_url)
    get_settings.cache_clear()
    yield pg_url
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample delivery (seed 7, scale 1), generated once per session: ``sample_dir/clean``, ``/dirty``."""
    from data.generator import generate

    existing = os.environ.get("ONEMAP_TEST_SAMPLE_DIR")  # reuse a delivery generated with seed 7, scale 1
    if existing:
        return Path(existing)
    out = tmp_path_factory.mktemp("sample")
    generate(out, seed=7, scale=1)
    return out
