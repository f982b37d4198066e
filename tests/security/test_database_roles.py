"""Issue 17, finding 1: the database enforces least privilege, not only the Python code.

Another OS account cannot reach the embedded cluster; ``pg_hba.conf`` asks every connection for a
password; the running server's connections are all ``onemap_api``, which PostgreSQL refuses the
``restricted`` schema (except through ``SET LOCAL ROLE onemap_privileged``), ``COPY ... TO
PROGRAM`` and DDL; the server refuses to start as a superuser or as the schema owner; a cluster
created with ``initdb -A trust`` by an earlier version is secured by ``db up``.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import httpx
import psycopg
import pytest
import sqlalchemy as sa

from tests.api_support import auth, make_settings, running_server
from tests.conftest import make_world_readable_tmpdir

PSQL = "/usr/lib/postgresql/15/bin/psql"


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.fixture(scope="module")
def cluster(pg_server):  # noqa: ANN001, ANN201
    if pg_server.cluster is None:
        pytest.skip("embedded cluster only (ONEMAP_TEST_DATABASE_URL is set)")
    return pg_server.cluster


@pytest.fixture(scope="module")
def api_url(pg_server, pg_url: str) -> str:  # noqa: ANN001
    url = pg_server.api_url_for(pg_url)
    if url is None:
        pytest.skip("no onemap_api login on this server (ONEMAP_TEST_API_DATABASE_URL)")
    return url


def _as_nobody(args: list[str]) -> subprocess.CompletedProcess[str]:
    runuser = shutil.which("runuser")
    if os.geteuid() != 0 or runuser is None:
        pytest.skip("needs root (runuser) to act as another OS account")
    env = {"PATH": "/usr/bin:/bin", "HOME": "/"}  # no PGPASSWORD, no ~/.pgpass
    return subprocess.run([runuser, "-u", "nobody", "--", *args], capture_output=True, text=True,
                          env=env, cwd="/", timeout=60)


# --- the cluster: passwords everywhere, nothing readable by others -----------------------------------
def test_pg_hba_asks_every_connection_for_a_password(cluster) -> None:  # noqa: ANN001
    text = subprocess.run(["cat", str(cluster.hba_file)], capture_output=True, text=True, check=True).stdout
    rules = [line.split("#", 1)[0].split() for line in text.splitlines()]
    rules = [r for r in rules if r]
    assert rules, "pg_hba.conf has no rules"
    for rule in rules:
        assert rule[-1] == "scram-sha-256", f"pg_hba.conf rule without a password: {' '.join(rule)}"
    assert "trust" not in text.split() and "peer" not in text.split()


def test_socket_dir_and_secrets_are_private(cluster) -> None:  # noqa: ANN001
    run = cluster.run_dir.stat()
    assert stat.S_IMODE(run.st_mode) == 0o700, oct(run.st_mode)
    secrets = cluster.secrets_file.stat()
    assert stat.S_IMODE(secrets.st_mode) == 0o600, oct(secrets.st_mode)
    assert secrets.st_uid == os.geteuid()


@pytest.mark.parametrize("user", ["postgres", "onemap_owner", "onemap_api"])
def test_other_os_account_cannot_connect_over_tcp(cluster, user: str) -> None:  # noqa: ANN001
    url = f"postgresql://{user}@127.0.0.1:{cluster.port}/{cluster.database}"
    proc = _as_nobody([PSQL, "--no-password", url, "-c", "SELECT count(*) FROM restricted.persons"])
    assert proc.returncode != 0, proc.stdout
    assert "password" in proc.stderr, proc.stderr


def test_other_os_account_cannot_reach_the_socket(cluster) -> None:  # noqa: ANN001
    proc = _as_nobody([PSQL, "--no-password", "-h", str(cluster.run_dir), "-p", str(cluster.port),
                       "-U", "postgres", "-d", cluster.database, "-c", "SELECT 1"])
    assert proc.returncode != 0, proc.stdout
    assert "Permission denied" in proc.stderr or "password" in proc.stderr, proc.stderr


# --- onemap_api: what PostgreSQL itself refuses ------------------------------------------------------
def test_api_role_is_not_privileged(api_url: str) -> None:
    with psycopg.connect(_libpq(api_url)) as conn:
        role, sup, createrole, createdb = conn.execute(
            "SELECT rolname, rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        assert (role, sup, createrole, createdb) == ("onemap_api", False, False, False)
        owner = conn.execute("SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'restricted'")
        assert owner.fetchone()[0] == "onemap_owner"


@pytest.mark.parametrize("statement", [
    "SELECT * FROM restricted.persons",
    "SELECT * FROM restricted.population_by_grid_full",
    "COPY (SELECT 1) TO PROGRAM 'id'",
    "CREATE TABLE public.evil (x int)",
    "CREATE TEMP TABLE evil (x int)",
    "DROP TABLE events",
    "TRUNCATE gps_fixes",
    "DELETE FROM events",
    "DELETE FROM audit_log",
    "ALTER TABLE events DISABLE TRIGGER events_before_insert",
    "SET ROLE onemap_owner",
    "SELECT pg_read_file('/etc/passwd')",
])
def test_api_role_is_refused(api_url: str, statement: str) -> None:
    with psycopg.connect(_libpq(api_url)) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)


def test_privileged_population_only_through_set_local_role(api_url: str) -> None:
    from gis import analytics
    from gis.dbroles import privileged_role

    engine = sa.create_engine(api_url)
    try:
        full = "SELECT count(*) FROM restricted.population_by_grid_full"
        with engine.connect() as conn:
            with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
                conn.execute(sa.text(full))
        with engine.connect() as conn:
            with privileged_role(conn):
                assert conn.execute(sa.text("SELECT current_user")).scalar_one() == "onemap_privileged"
                conn.execute(sa.text(full)).scalar_one()
            # the role lapses with the savepoint: the same transaction is onemap_api again
            assert conn.execute(sa.text("SELECT current_user")).scalar_one() == "onemap_api"
            with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
                conn.execute(sa.text(full))
        rows = analytics.population(engine, "grid", privileged=True)  # the library does SET LOCAL ROLE
        assert isinstance(rows, list)
        with engine.connect() as conn:
            assert analytics.population(conn, "grid", privileged=True) == rows
            assert conn.execute(sa.text("SELECT current_user")).scalar_one() == "onemap_api"
    finally:
        engine.dispose()


# --- the server ------------------------------------------------------------------------------------
def test_every_server_connection_is_onemap_api(pg_server, api_db_url: str, tiles_dir: Path,  # noqa: ANN001
                                               tokens: dict[str, str]) -> None:
    settings = make_settings(api_db_url, tiles_dir)
    assert settings.db.api_database_url and not settings.db.allow_privileged_db_user
    dbname = sa.engine.make_url(api_db_url).database
    with running_server(settings) as base:
        for path, role in [("/collections/buildings/items?limit=5", None), ("/analytics/kpis", "viewer"),
                           ("/collections/events/items?limit=5", "operator"), ("/auth/me", "admin"),
                           ("/analytics/population?level=grid", "privileged")]:
            r = httpx.get(base + path, headers=auth(tokens, role), timeout=60)
            assert r.status_code == 200, (path, r.status_code, r.text[:300])
        with psycopg.connect(pg_server.admin_url) as admin:
            rows = admin.execute(
                "SELECT usename, application_name FROM pg_stat_activity "
                "WHERE datname = %s AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
                (dbname,)).fetchall()
    assert any(app == "onemap-api" for _, app in rows), rows
    assert {user for user, _ in rows} == {"onemap_api"}, rows


@pytest.mark.parametrize("who", ["owner", "superuser"])
def test_server_refuses_privileged_database_role(pg_server, api_db_url: str, tiles_dir: Path,  # noqa: ANN001
                                                 who: str) -> None:
    from fastapi.testclient import TestClient

    from api.app import create_app
    from core.errors import ConfigError

    url = api_db_url if who == "owner" else \
        sa.engine.make_url(pg_server.admin_url).set(database=sa.engine.make_url(api_db_url).database) \
        .render_as_string(hide_password=False)
    settings = make_settings(api_db_url, tiles_dir, api_database_url=url, allow_privileged_db_user=False)
    with pytest.raises(ConfigError, match="refuses to connect") as err:
        with TestClient(create_app(settings)):
            pass
    assert "ONEMAP_ALLOW_PRIVILEGED_DB_USER" in str(err.value)
    allowed = make_settings(api_db_url, tiles_dir, api_database_url=url, allow_privileged_db_user=True)
    with TestClient(create_app(allowed)) as c:
        assert c.get("/collections/buildings/items?limit=1").status_code == 200


def test_every_new_api_connection_is_checked(api_db_url: str, tiles_dir: Path) -> None:
    """Not only at startup: a server started while PostgreSQL was down checks each new pooled
    connection, so it never serves as the owner either."""
    from api.app import create_app
    from core.errors import ConfigError

    settings = make_settings(api_db_url, tiles_dir, api_database_url=api_db_url, allow_privileged_db_user=False)
    state = create_app(settings).state.onemap
    try:
        with pytest.raises(ConfigError, match="owns the schema"), state.engine.connect():
            pass
    finally:
        state.dispose()


# --- upgrading a cluster of an earlier version -------------------------------------------------------
def test_trust_cluster_is_secured_by_db_up() -> None:
    from core.settings import DatabaseSettings
    from gis import dbsecrets
    from gis.cluster import EmbeddedCluster

    var_dir = make_world_readable_tmpdir("onemap-test-trust-")
    settings = DatabaseSettings(var_dir=var_dir, database_url=None, pg_port=0)
    cluster = EmbeddedCluster(settings)
    try:
        cluster.up()
        # make it look like an earlier version's: trust everywhere, objects owned by postgres, no secrets
        with psycopg.connect(cluster.admin_url(cluster.database), autocommit=True) as conn:
            conn.execute("CREATE TABLE legacy_layer (id int PRIMARY KEY)")
            conn.execute("ALTER ROLE postgres PASSWORD NULL")
            cluster._run(["sh", "-c", f"cat > '{cluster.hba_file}'"],
                         input="local all all trust\nhost all all 127.0.0.1/32 trust\n")
            conn.execute("SELECT pg_reload_conf()")
        cluster.secrets_file.unlink()
        cluster.run_dir.chmod(0o777)
        assert not cluster.hba_secure()

        EmbeddedCluster(settings).up()

        assert cluster.hba_secure()
        assert stat.S_IMODE(cluster.run_dir.stat().st_mode) == 0o700
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres", connect_timeout=10)
        passwords = dbsecrets.read_secrets(cluster.secrets_file)
        assert set(passwords) == {"postgres", "onemap_owner", "onemap_api"}
        with psycopg.connect(_libpq(cluster.url())) as conn:
            owner = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'legacy_layer'").fetchone()
            assert owner == ("onemap_owner",)
    finally:
        cluster.stop()
        shutil.rmtree(var_dir, ignore_errors=True)
