"""Migration 0001_overlays and gis/models.py describe the same schema; lifecycle table agrees."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import Engine

from gis import lifecycle, models
from tests.gis_helpers import conn, libpq  # noqa: F401 - fixture


@pytest.fixture(scope="module")
def engine(pg_url: str) -> Engine:
    eng = create_engine(pg_url)
    yield eng
    eng.dispose()


def _tables() -> list[tuple[str | None, str]]:
    return [(t.schema, t.name) for t in models.Base.metadata.sorted_tables]


def test_every_model_table_exists_with_the_same_columns(engine: Engine) -> None:
    insp = inspect(engine)
    for schema, name in _tables():
        table = models.Base.metadata.tables[f"{schema}.{name}" if schema else name]
        db_cols = {c["name"]: c for c in insp.get_columns(name, schema=schema)}
        assert set(db_cols) == {c.name for c in table.columns}, name
        for col in table.columns:
            assert db_cols[col.name]["nullable"] == col.nullable, f"{name}.{col.name} nullability"


def test_indexes_agree(engine: Engine) -> None:
    insp = inspect(engine)
    for schema, name in _tables():
        table = models.Base.metadata.tables[f"{schema}.{name}" if schema else name]
        db_idx = {i["name"] for i in insp.get_indexes(name, schema=schema)}
        model_idx = {i.name for i in table.indexes}
        db_uq = {u["name"] for u in insp.get_unique_constraints(name, schema=schema)}
        model_uq = {c.name for c in table.constraints if c.__class__.__name__ == "UniqueConstraint"}
        assert model_idx <= db_idx, f"{name}: indexes missing in DB: {model_idx - db_idx}"
        assert db_idx - db_uq - model_idx == set(), f"{name}: DB indexes not in models"
        assert model_uq == db_uq, name


def test_no_table_outside_models(engine: Engine) -> None:
    insp = inspect(engine)
    ours = {n for s, n in _tables() if s is None}
    in_db = set(insp.get_table_names())
    partitions = {n for n in in_db if n.startswith("gps_fixes_")}
    # other branches (e.g. 0001_auth) own their tables; ours must all exist
    assert ours <= in_db
    assert "gps_fixes_default" in partitions
    assert set(insp.get_table_names(schema="restricted")) == {"persons"}


def test_geometry_columns_srids(conn: psycopg.Connection) -> None:  # noqa: F811
    rows = conn.execute(
        "SELECT f_table_name, f_geometry_column, srid FROM geometry_columns WHERE f_table_schema = 'public'"
    ).fetchall()
    by = {(t, c): s for t, c, s in rows}
    for (table, column), srid in by.items():
        if table.startswith("gps_fixes_") or table.startswith("population_by_"):
            continue
        assert srid == (4548 if column == "geom_4548" else 4490), (table, column)
    assert by[("buildings", "geom")] == 4490 and by[("buildings", "geom_4548")] == 4548


def test_lifecycle_table_matches_database(conn: psycopg.Connection) -> None:  # noqa: F811
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


def test_roles_and_grants(conn: psycopg.Connection) -> None:  # noqa: F811
    roles = {r[0] for r in conn.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE 'onemap_%'")}
    assert set(models.DB_ROLES) <= roles
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


def test_migrations_round_trip(pg_url: str) -> None:
    """Every migration downgrades cleanly and upgrades again, in a database of its own."""
    from gis import migrate

    admin = libpq(pg_url)
    base, _, _ = admin.rpartition("/")
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS onemap_migrations")
        c.execute("CREATE DATABASE onemap_migrations")
    url = f"{base}/onemap_migrations".replace("postgresql://", "postgresql+psycopg://", 1)
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
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute("DROP DATABASE IF EXISTS onemap_migrations WITH (FORCE)")
