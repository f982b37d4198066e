"""``onemap db psql``: replace this process with psql on the onemap database as its owner.

The password travels in the environment (``PGPASSWORD``), never in argv (``ps`` shows argv to
every local user); the rest of the URL is given as separate libpq options.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from sqlalchemy.engine import make_url

from core.settings import DatabaseSettings, Settings
from gis import db as gisdb


def psql_command(settings: DatabaseSettings | Settings, args: list[str]) -> tuple[list[str], dict[str, str]]:
    """(argv, environment) that open psql as the owner; argv holds no password."""
    db = gisdb.db_settings(settings)
    url = make_url(gisdb.libpq_url(db))
    candidates = [db.pg_bin_dir / "psql", Path(shutil.which("psql") or "psql")]
    exe = next((str(p) for p in candidates if p.exists()), "psql")
    argv = [exe, "--host", url.host or "127.0.0.1", "--port", str(url.port or 5432),
            "--username", url.username or "", "--dbname", url.database or db.pg_database, *args]
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = url.password
    for key, value in url.query.items():  # sslmode=... and friends
        if isinstance(value, str):
            env[f"PG{key.upper()}"] = value
    return argv, env


def exec_psql(settings: DatabaseSettings | Settings, args: list[str]) -> None:
    argv, env = psql_command(settings, args)
    os.execvpe(argv[0], argv, env)
