"""Database roles: the role SQL (``gis/sql/roles/roles.sql``), the server's refusal to run as a
privileged role, and ``SET LOCAL ROLE onemap_privileged`` for person-level reads.

Roles (see docs/security-database.md): ``onemap_owner`` owns the schema (migrations, loaders, the
CLI); ``onemap_api`` is what ``onemap serve`` connects as (reads the layers, writes the tables the
API writes; no DDL, no ``restricted`` schema); ``onemap_privileged`` (NOLOGIN) reads ``restricted``
and is assumed by ``onemap_api`` only inside a privileged user's request, in a transaction.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from core.errors import ConfigError

OWNER = "onemap_owner"
API = "onemap_api"
PRIVILEGED = "onemap_privileged"

ROLES_SQL = Path(__file__).resolve().parent / "sql" / "roles" / "roles.sql"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_VAR = re.compile(r""":'(\w+)'|:"(\w+)\"""")


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def render_roles_sql(database: str, owner_password: str, api_password: str) -> str:
    """``roles.sql`` with its psql variables (``:'owner_password'``, ``:'api_password'``,
    ``:"database"``) substituted, ready to run as one script."""
    if not _IDENT.match(database):
        raise ConfigError(f"database name {database!r} is not a plain identifier (letters, digits, _)")
    values = {"owner_password": owner_password, "api_password": api_password, "database": database}

    def sub(m: re.Match[str]) -> str:
        literal, ident = m.group(1), m.group(2)
        if literal:
            return _literal(values[literal])
        return '"' + values[ident] + '"'

    return _VAR.sub(sub, ROLES_SQL.read_text(encoding="utf-8"))


def apply_roles(admin_url: str, database: str, owner_password: str, api_password: str) -> None:
    """Run the role SQL in ``database`` as the (superuser or CREATEROLE) role of ``admin_url``
    (a libpq URL of any database on that server)."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(admin_url)
    params["dbname"] = database
    script = render_roles_sql(database, owner_password, api_password)
    with psycopg.connect(make_conninfo(**params), autocommit=True) as conn:
        conn.execute(script.encode())  # several statements: simple query protocol, no parameters


# --- the server's own role -----------------------------------------------------------------------
_ROLE_CHECK = """
SELECT current_user AS role, r.rolsuper, r.rolcreaterole, r.rolbypassrls, r.rolreplication,
       pg_has_role(current_user, d.datdba, 'MEMBER') AS owns_database,
       coalesce(pg_has_role(current_user, n.nspowner, 'MEMBER'), false) AS owns_schema,
       coalesce(has_schema_privilege(current_user, n.oid, 'USAGE'), false) AS reads_restricted
  FROM pg_roles r
  JOIN pg_database d ON d.datname = current_database()
  LEFT JOIN pg_namespace n ON n.nspname = 'restricted'
 WHERE r.rolname = current_user
"""

ALLOW_HINT = ("connect as onemap_api (ONEMAP_API_DATABASE_URL; `onemap db roles` creates it), or set "
              "ONEMAP_ALLOW_PRIVILEGED_DB_USER=true to accept it (never in production)")


def role_problems(dbapi_conn: Any) -> tuple[str, list[str]]:
    """(current role, what makes it too powerful for the API) on a DB-API (psycopg) connection."""
    cur = dbapi_conn.cursor()
    try:
        cur.execute(_ROLE_CHECK)
        row = cur.fetchone()
        cols = [c.name if hasattr(c, "name") else c[0] for c in cur.description]
    finally:
        cur.close()
    info = dict(zip(cols, row, strict=True))
    problems = []
    if info["rolsuper"]:
        problems.append("is a superuser")
    if info["rolcreaterole"]:
        problems.append("may create roles")
    if info["rolbypassrls"] or info["rolreplication"]:
        problems.append("bypasses row security or replicates")
    if info["owns_database"]:
        problems.append("owns the database")
    if info["owns_schema"]:
        problems.append("owns the schema")
    if info["reads_restricted"] and not info["owns_schema"]:
        problems.append("reads the restricted schema without SET ROLE")
    return str(info["role"]), problems


def check_api_role(dbapi_conn: Any, allow: bool) -> None:
    """Raise ConfigError when the API's connection runs as a superuser, the schema/database owner,
    or a role with direct access to ``restricted`` — unless ``allow`` (ONEMAP_ALLOW_PRIVILEGED_DB_USER)."""
    role, problems = role_problems(dbapi_conn)
    if problems and not allow:
        raise ConfigError(f"the API refuses to connect to PostgreSQL as role {role!r}: it {', '.join(problems)}",
                          hint=ALLOW_HINT)


@contextmanager
def privileged_role(conn: Any) -> Iterator[Any]:
    """Inside: the SQLAlchemy ``Connection`` ``conn`` runs as ``onemap_privileged``
    (``SET LOCAL ROLE`` in a savepoint, begun on the current transaction or a new one); at exit the
    savepoint is rolled back, which also ends the role. Use only for a privileged user's read:
    PostgreSQL refuses ``restricted`` to ``onemap_api`` otherwise."""
    from sqlalchemy import text

    savepoint = conn.begin_nested()
    try:
        conn.execute(text(f"SET LOCAL ROLE {PRIVILEGED}"))
        yield conn
    finally:
        if savepoint.is_active:
            savepoint.rollback()
