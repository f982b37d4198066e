"""The schema has one source, the migration SQL files (``gis/sql/migrations/``).

Checked here against the migrated database: what the files declare (tables, indexes, views,
functions) is exactly what exists; the table and role overviews of docs/postgis.md name the
same tables, keys and roles; the lifecycle table agrees with :mod:`gis.lifecycle`.
"""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine, inspect

from gis import lifecycle, migrate

REPO = Path(__file__).resolve().parent.parent
POSTGIS_DOC = REPO / "docs" / "postgis.md"
#: revisions in the order they apply (0001_auth and 0001_overlays are independent branches)
REVISIONS = ("0000_base", "0001_auth", "0001_overlays", "0002_events_time_cover", "0003_least_privilege",
             "0004_accounts", "0004_live_ops", "0005_dispatch", "0006_privacy", "0007_access",
             "0008_road_snap", "0009_civil", "0010_population_hidden", "0011_viewshed_roofs",
             "0012_events_bulk_located")
#: tables of branch 0001_auth, described in docs/api.md rather than docs/postgis.md
AUTH_TABLES = {"api_users", "audit_log", "api_tokens", "api_user_devices", "login_failures"}
#: created at run time by ensure_gps_partitions(), not by a migration
RUNTIME_PARTITION = re.compile(r"^gps_fixes_p\d{6}$")

_IDENT = r"((?:\w+\.)?\w+)"


def _declared() -> dict[str, set[str]]:
    """Objects the upgrade files create (later DROP INDEX statements applied); index names
    without schema (they live in their table's schema)."""
    out: dict[str, set[str]] = {"table": set(), "index": set(), "view": set(), "function": set()}
    for rev in REVISIONS:
        for path in migrate.migration_sql_files(rev, "up"):
            sql = re.sub(r"--[^\n]*", "", path.read_text(encoding="utf-8"))
            for verb, kind, name in re.findall(
                rf"(?im)^\s*(CREATE|DROP)\s+(?:OR\s+REPLACE\s+)?(?:UNIQUE\s+)?"
                rf"(TABLE|INDEX|VIEW|FUNCTION)\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?{_IDENT}", sql):
                if verb.upper() == "DROP":
                    out[kind.lower()].discard(name)
                else:
                    out[kind.lower()].add(name)
    return out


def _db_tables(c: psycopg.Connection) -> set[str]:
    rows = c.execute(
        "SELECT CASE WHEN n.nspname = 'public' THEN c.relname ELSE n.nspname || '.' || c.relname END "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname IN ('public', 'restricted') AND c.relkind IN ('r', 'p') "
        "AND c.relname NOT IN ('spatial_ref_sys', 'alembic_version')"
    ).fetchall()
    return {r[0] for r in rows if not RUNTIME_PARTITION.match(r[0].rpartition(".")[2])}


def test_every_revision_has_its_sql_files() -> None:
    assert set(REVISIONS) == migrate.head_revisions() | {"0000_base", "0001_auth", "0001_overlays",
                                                         "0002_events_time_cover", "0003_least_privilege",
                                                         "0004_accounts", "0004_live_ops", "0005_dispatch",
                                                         "0006_privacy", "0007_access", "0008_road_snap",
                                                         "0009_civil", "0010_population_hidden",
                                                         "0011_viewshed_roofs"}
    for rev in REVISIONS:
        assert migrate.migration_sql_files(rev, "up") and migrate.migration_sql_files(rev, "down")
    dirs = {p.name for p in migrate.MIGRATION_SQL_DIR.iterdir() if p.is_dir()}
    assert dirs == set(REVISIONS), "SQL folders without a revision"


def test_tables_are_the_declared_ones(conn: psycopg.Connection) -> None:
    assert _db_tables(conn) == _declared()["table"]


def test_indexes_are_the_declared_ones(conn: psycopg.Connection) -> None:
    """Every non-constraint index on our tables comes from a migration file, and none is missing.

    Catches indexes created or renamed elsewhere (e.g. a loader dropping and re-creating them).
    """
    rows = conn.execute(
        "SELECT i.relname, t.relname "
        "FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid "
        "JOIN pg_namespace n ON n.oid = i.relnamespace "
        "WHERE n.nspname IN ('public', 'restricted') AND t.relname NOT IN ('spatial_ref_sys', 'alembic_version') "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid) "
        "AND NOT x.indrelid IN (SELECT inhrelid FROM pg_inherits)"
    ).fetchall()
    assert {name for name, _ in rows} == _declared()["index"]


def test_views_and_functions_exist(conn: psycopg.Connection) -> None:
    declared = _declared()
    views = {r[0] for r in conn.execute(
        "SELECT CASE WHEN schemaname = 'public' THEN viewname ELSE schemaname || '.' || viewname END "
        "FROM pg_views WHERE schemaname IN ('public', 'restricted') "
        "AND viewname NOT IN ('geometry_columns', 'geography_columns')")}
    assert views == declared["view"]
    functions = {r[0] for r in conn.execute(
        "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = 'public'")}
    assert declared["function"] <= functions


def _doc_table(heading: str) -> list[list[str]]:
    """Rows (cells) of the first markdown table under ``heading`` in docs/postgis.md."""
    text = POSTGIS_DOC.read_text(encoding="utf-8")
    section = text.split(f"\n{heading}\n", 1)[1]
    lines = [ln for ln in section.split("\n\n## ")[0].splitlines() if ln.startswith("|")]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]]


def _doc_keys(cell: str) -> list[str]:
    if cell.startswith("identity"):
        return ["id"]
    if cell.startswith("("):
        return re.findall(r"`(\w+)`", cell.split(")")[0])
    return re.findall(r"`(\w+)`", cell)[:1]


def test_docs_table_overview_matches_database(conn: psycopg.Connection) -> None:
    documented: dict[str, list[str]] = {}
    for name_cell, key_cell, _ in _doc_table("## Tables"):
        for name in re.findall(r"`([\w.]+)`", name_cell):
            documented[name] = _doc_keys(key_cell)
    # partitions (gps_fixes_default) are described with their parent
    assert set(documented) == _db_tables(conn) - AUTH_TABLES - {"gps_fixes_default"}
    for table, keys in documented.items():
        schema, _, name = table.rpartition(".")
        pk = conn.execute(
            "SELECT array_agg(a.attname ORDER BY array_position(k.conkey, a.attnum)) "
            "FROM pg_constraint k JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = ANY(k.conkey) "
            "WHERE k.contype = 'p' AND k.conrelid = to_regclass(%s)", (table,)
        ).fetchone()[0]
        assert pk == keys, f"docs/postgis.md: key of {table} is {keys}, database {pk}"
        assert schema in ("", "restricted")


def test_docs_roles_match_database(conn: psycopg.Connection) -> None:
    documented = {re.findall(r"`(\w+)`", row[0])[0] for row in _doc_table("## Population, suppression and roles")}
    in_db = {r[0] for r in conn.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE 'onemap\\_%'")}
    assert documented == {"onemap_owner", "onemap_api", "onemap_reader", "onemap_writer", "onemap_privileged",
                          "onemap_admin"}
    assert documented <= in_db


def test_geometry_columns_srids(conn: psycopg.Connection) -> None:
    rows = conn.execute(
        "SELECT f_table_name, f_geometry_column, srid FROM geometry_columns WHERE f_table_schema = 'public'"
    ).fetchall()
    by = {(t, c): s for t, c, s in rows}
    for (table, column), srid in by.items():
        if table.startswith("gps_fixes_") or table.startswith("population_by_"):
            continue
        assert srid == (4548 if column == "geom_4548" else 4490), (table, column)
    assert by[("buildings", "geom")] == 4490 and by[("buildings", "geom_4548")] == 4548


def test_lifecycle_table_matches_database(conn: psycopg.Connection) -> None:
    rows = conn.execute("SELECT from_status, to_status, action FROM event_transition").fetchall()
    assert sorted(rows) == sorted(lifecycle.transition_rows())


def test_lifecycle_python() -> None:
    assert lifecycle.allowed_transitions("reported") == ["accepted", "rejected"]
    assert lifecycle.allowed_transitions("closed") == ["dispatched"]
    assert lifecycle.allowed_transitions("rejected") == []
    assert lifecycle.action_for("verified", "dispatched") == "reopen"
    with pytest.raises(lifecycle.IllegalTransition) as err:
        lifecycle.check_transition("reported", "closed")
    assert err.value.allowed == ("accepted", "rejected")
    assert "reported -> closed" in str(err.value)
    with pytest.raises(ValueError):
        lifecycle.check_transition("reported", "nonsense")


def test_roles_and_grants(conn: psycopg.Connection) -> None:
    conn.execute("SET ROLE onemap_reader")
    conn.execute("SELECT count(*) FROM population_by_building").fetchone()
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT count(*) FROM restricted.persons")
    conn.rollback()
    conn.execute("SET ROLE onemap_privileged")
    conn.execute("SELECT count(*) FROM restricted.persons").fetchone()
    conn.execute("SELECT count(*) FROM restricted.population_by_building_full").fetchone()
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("DELETE FROM events")
    conn.rollback()


def test_migrations_round_trip(pg_server) -> None:  # noqa: ANN001 - tests.db_support.PgServer
    """Every migration downgrades cleanly and upgrades again (as the owner), in a database of its own."""
    url = pg_server.create_database("onemap_migrations")
    try:
        migrate.upgrade(url)
        assert not migrate.pending(url)
        eng = create_engine(url)
        try:
            with eng.connect() as c:
                indexes = {i["name"] for i in inspect(c).get_indexes("events")}
            assert "events_reported_at_cover_idx" in indexes and "events_reported_at_idx" not in indexes
            migrate.downgrade(url, "0001_overlays")
            with eng.connect() as c:
                indexes = {i["name"] for i in inspect(c).get_indexes("events")}
            assert "events_reported_at_idx" in indexes and "events_reported_at_cover_idx" not in indexes
            migrate.downgrade(url)
            with eng.connect() as c:
                assert set(inspect(c).get_table_names()) <= {"alembic_version", "spatial_ref_sys"}
            migrate.upgrade(url)
            assert not migrate.pending(url)
        finally:
            eng.dispose()
    finally:
        pg_server.drop_database("onemap_migrations")
