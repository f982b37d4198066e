"""The test session's PostgreSQL as the roles onemap uses (see ``pg_server`` in tests/conftest.py).

``PgServer.owner_url`` is the schema owner's URL (``pg_url``: setup, migrations, loading);
``api_url_for(owner_url)`` the same database as ``onemap_api`` (what the API app connects as);
``create_database(name)`` makes a fresh database with onemap's roles and PostGIS (as the superuser)
and returns its owner URL. ``make_settings`` (tests/api_support.py) finds the API URL of a database
through :data:`API_URLS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

#: owner SQLAlchemy URL -> onemap_api SQLAlchemy URL of the same database
API_URLS: dict[str, str] = {}


def _swap(url: str, **parts: str) -> str:
    return sa.engine.make_url(url).set(**parts).render_as_string(hide_password=False)


@dataclass
class PgServer:
    #: libpq URL of a superuser (database ``postgres``), for CREATE DATABASE and roles
    admin_url: str
    #: SQLAlchemy URL of the session database as onemap_owner
    owner_url: str
    #: (user, password) of onemap_api, None on an external server without ONEMAP_TEST_API_DATABASE_URL
    api_login: tuple[str, str] | None
    #: passwords of the roles (embedded cluster), for roles.sql in new databases
    passwords: dict[str, str] = field(default_factory=dict)
    #: the embedded cluster (gis.cluster.EmbeddedCluster), None on an external server
    cluster: Any = None

    def api_url_for(self, owner_url: str) -> str | None:
        if self.api_login is None:
            return None
        user, password = self.api_login
        return _swap(owner_url, username=user, password=password)

    def register(self, owner_url: str) -> str:
        api = self.api_url_for(owner_url)
        if api is not None:
            API_URLS[owner_url] = api
        return owner_url

    def create_database(self, name: str, template: str | None = None) -> str:
        """Drop and create database ``name`` (roles, ownership, PostGIS); its owner URL (SQLAlchemy).
        ``template``: a copy of that database (its idle connections are closed first: PostgreSQL
        copies only a database nobody is connected to)."""
        import psycopg

        from gis.dbroles import apply_roles

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            if template is None:
                conn.execute(f'CREATE DATABASE "{name}"')
            else:
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE datname = %s AND pid <> pg_backend_pid()", (template,))
                conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        if self.passwords:
            apply_roles(self.admin_url, name, self.passwords["onemap_owner"], self.passwords["onemap_api"])
        return self.register(_swap(self.owner_url, database=name))

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
