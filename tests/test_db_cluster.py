"""`onemap db ...` against real PostgreSQL 15 + PostGIS 3 clusters."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.conftest import make_world_readable_tmpdir

ONEMAP = [sys.executable, "-m", "onemap.cli"]


def run(args: list[str], env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*ONEMAP, *args], env=env, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"onemap {' '.join(args)} failed: {proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture()
def var_env() -> dict[str, str]:
    var_dir = make_world_readable_tmpdir("onemap-test-var-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONEMAP_")}
    env["ONEMAP_VAR_DIR"] = str(var_dir)
    yield env
    subprocess.run([*ONEMAP, "db", "down"], env=env, capture_output=True, timeout=120)
    shutil.rmtree(var_dir, ignore_errors=True)


def test_up_status_down_idempotent(var_env: dict[str, str]) -> None:
    # Before anything: status is honest and fails.
    status = run(["db", "status", "--json"], var_env, check=False)
    assert status.returncode == 1
    assert json.loads(status.stdout)["initialised"] is False

    run(["db", "up"], var_env)
    run(["db", "up"], var_env)  # second call is a no-op, not an error
    info = json.loads(run(["db", "status", "--json"], var_env).stdout)
    assert info["running"] and info["reachable"]
    assert info["postgis_version"].startswith("3.")
    assert info["server_version"].startswith("15.")
    assert info["migrations_current"] and info["migrations_pending"] is False

    url = run(["db", "url"], var_env).stdout.strip()
    assert url.startswith("postgresql+psycopg://onemap_owner:")  # the schema owner, with its password
    libpq = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(libpq) as conn:
        assert conn.execute("SELECT postgis_version()").fetchone()[0].startswith("3.")
        revisions = {r[0] for r in conn.execute("SELECT version_num FROM alembic_version")}
    assert "0000_base" in revisions or revisions  # base or a later head on top of it

    run(["db", "down"], var_env)
    assert "not running" in run(["db", "down"], var_env).stdout
    down = run(["db", "status", "--json"], var_env, check=False)
    assert down.returncode == 1
    assert json.loads(down.stdout)["running"] is False

    # Restart keeps the data and the port.
    run(["db", "up"], var_env)
    assert run(["db", "url"], var_env).stdout.strip() == url


def test_database_url_override_never_touches_var_pg(pg_url: str, var_env: dict[str, str]) -> None:
    env = dict(var_env, ONEMAP_DATABASE_URL=pg_url.replace("postgresql+psycopg://", "postgresql://"))
    up = run(["db", "up"], env)
    assert "ONEMAP_DATABASE_URL is set" in up.stdout
    assert run(["db", "url"], env).stdout.strip() == pg_url
    info = json.loads(run(["db", "status", "--json"], env).stdout)
    assert info["external"] is True and info["reachable"] is True
    assert not (Path(env["ONEMAP_VAR_DIR"]) / "pg").exists()


def test_migrations_at_head(pg_url: str) -> None:
    from gis import migrate

    assert not migrate.pending(pg_url)
    assert migrate.current_revisions(pg_url) == migrate.head_revisions()


def test_port_in_time_wait_is_free_but_a_listener_is_not() -> None:
    """Regression: `db down` then `db up` failed with "port ... taken" while the old server's
    connections sat in TIME_WAIT (PostgreSQL itself binds with SO_REUSEADDR)."""
    import socket

    from gis.cluster import _port_free

    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as PostgreSQL's listener does
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]
    assert not _port_free(port)
    cli = socket.create_connection(("127.0.0.1", port))
    conn, _ = srv.accept()
    conn.close()  # the server side closes first: its end of the connection goes to TIME_WAIT
    cli.recv(1)
    cli.close()
    srv.close()
    assert _port_free(port)
