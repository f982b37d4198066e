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
import sqlalchemy as sa

from tests.db_support import PgServer

REPO = Path(__file__).resolve().parent.parent

#: fixture modules: the API database/tokens/tiles/client, the tiny PostGIS district
pytest_plugins = ["tests.fixtures.api", "tests.fixtures.gis", "tests.fixtures.sample"]


def make_world_readable_tmpdir(prefix: str) -> Path:
    """A temp dir the `postgres` OS user can traverse (pytest's tmp_path is 0700 root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """The session's PostgreSQL: a throwaway embedded cluster (password auth, roles onemap_owner /
    onemap_api), or ``ONEMAP_TEST_DATABASE_URL`` (a superuser; ``ONEMAP_TEST_API_DATABASE_URL``
    optional) — its database migrated as the owner."""
    from core.settings import DatabaseSettings
    from gis import dbsecrets, migrate
    from gis.cluster import EmbeddedCluster

    external = os.environ.get("ONEMAP_TEST_DATABASE_URL")
    if external:
        url = external.replace("postgresql://", "postgresql+psycopg://", 1)
        api = os.environ.get("ONEMAP_TEST_API_DATABASE_URL")
        login = None
        if api:
            parsed = sa.engine.make_url(api)
            login = (parsed.username or "", parsed.password or "")
        admin = sa.engine.make_url(url).set(drivername="postgresql", database="postgres")
        server = PgServer(admin.render_as_string(hide_password=False), url, login)
        migrate.upgrade(url)
        server.register(url)
        yield server
        return
    var_dir = make_world_readable_tmpdir("onemap-test-pg-")
    cluster = EmbeddedCluster(DatabaseSettings(var_dir=var_dir, database_url=None, pg_port=0))
    cluster.up()
    passwords = dbsecrets.read_secrets(cluster.secrets_file)
    server = PgServer(cluster.admin_url(), cluster.url(), (dbsecrets.API, passwords[dbsecrets.API]), passwords,
                      cluster)
    server.register(server.owner_url)
    migrate.upgrade(server.owner_url)
    try:
        yield server
    finally:
        cluster.stop()
        shutil.rmtree(var_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_url(pg_server: PgServer) -> str:
    """SQLAlchemy URL of a migrated PostGIS database for this test session, as its owner
    (``onemap_owner``: setup and loading). The API app connects as ``onemap_api``
    (``pg_server.api_url_for(url)``; ``make_settings`` does it)."""
    return pg_server.owner_url


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
