"""The stored population suppression (migration 0010_population_hidden): the loaders refresh it in
their transaction, the public views read it, and a change the loaders did not make (or a new
year) makes the views compute it per query again instead of publishing a stale suppression."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import psycopg
import pytest

from gis.loaders import load_layer
from tests.gis_helpers import libpq

pytestmark = pytest.mark.usefixtures("tiny_loaded")

_LIVE = """SELECT lvl, id, measure FROM population_complementary(
               (SELECT jsonb_agg(to_jsonb(c)) FROM restricted.population_cells c))"""


def _stored(c: psycopg.Connection) -> set[tuple[str, str, str]]:
    return set(c.execute("SELECT lvl, id, measure FROM restricted.population_hidden").fetchall())


def _live(c: psycopg.Connection) -> set[tuple[str, str, str]]:
    return set(c.execute(_LIVE).fetchall())


def _state(c: psycopg.Connection) -> tuple[bool, bool]:
    """(stale, of this year)"""
    return c.execute(
        "SELECT stale, ref_year = population_ref_year() FROM restricted.population_hidden_state").fetchone()


def _public(c: psycopg.Connection, view: str, key: str, id_: str) -> tuple[int | None, list[str]]:
    return c.execute(f"SELECT total, suppressed FROM {view} WHERE {key} = %s", (id_,)).fetchone()  # noqa: S608


def _views(c: psycopg.Connection) -> list[tuple]:
    return c.execute("""SELECT 'b', building_id, to_jsonb(v) - 'geom' FROM population_by_building v
                        UNION ALL SELECT 'g', grid_id, to_jsonb(v) - 'geom' FROM population_by_grid v
                        UNION ALL SELECT 'c', community_id, to_jsonb(v) - 'geom' FROM population_by_community v
                        ORDER BY 1, 2""").fetchall()


def test_loaded_district_has_a_current_stored_suppression(conn: psycopg.Connection) -> None:
    assert _state(conn) == (False, True)
    stored = _stored(conn)
    assert stored and stored == _live(conn)
    # the views publish exactly what the stored set leaves
    for view, key, lvl in (("population_by_building", "building_id", "building"),
                           ("population_by_grid", "grid_id", "grid"),
                           ("population_by_community", "community_id", "community")):
        for id_, suppressed in conn.execute(f"SELECT {key}, suppressed FROM {view}"):  # noqa: S608
            assert set(suppressed) == {m for lv, i, m in stored if lv == lvl and i == id_}, (view, id_)


def test_load_population_refreshes_the_suppression(pg_url: str, tiny_delivery: Path, tmp_path: Path,
                                                   conn: psycopg.Connection) -> None:
    """`load population` of changed data: the views show the new suppression at once, from the
    stored set (not the per-query fallback)."""
    original = tiny_delivery / "clean" / "population.csv"
    df = pd.read_csv(original, dtype=str, keep_default_na=False)
    before = _views(conn)
    conn.rollback()
    changed = tmp_path / "population.csv"
    # B000004 keeps 2 of its 7 residents: its total is now hidden
    keep = df[df["building_id"] != "B000004"]
    pd.concat([df[df["building_id"] == "B000004"].head(2), keep]).to_csv(changed, index=False)
    try:
        rep = load_layer("population", changed, url=libpq(pg_url))
        assert any("population suppression refreshed" in n for n in rep.layers[0].notes), rep.layers[0].notes
        with psycopg.connect(libpq(pg_url)) as c:
            assert _state(c) == (False, True)
            assert _stored(c) == _live(c)
            assert ("building", "B000004", "total") in _stored(c)
            total, suppressed = _public(c, "population_by_building", "building_id", "B000004")
            assert total is None and "total" in suppressed
            assert _views(c) != before
    finally:
        load_layer("population", original, url=libpq(pg_url))
    with psycopg.connect(libpq(pg_url)) as c:
        assert _views(c) == before
        assert _state(c) == (False, True) and _stored(c) == _live(c)


def test_change_without_refresh_falls_back_to_the_live_suppression(conn: psycopg.Connection) -> None:
    """A write the loaders did not make marks the stored set stale; the views then compute the
    suppression per query (rolled back)."""
    conn.execute("DELETE FROM restricted.population_hidden")  # the views read it while current:
    assert _public(conn, "population_by_building", "building_id", "B000002") == (3, [])
    conn.execute("UPDATE restricted.persons SET unit = unit WHERE false")  # any write marks it stale
    assert _state(conn)[0] is True
    total, suppressed = _public(conn, "population_by_building", "building_id", "B000002")
    assert total is None and "total" in suppressed


def test_stored_set_of_another_year_is_not_used(conn: psycopg.Connection) -> None:
    conn.execute("UPDATE restricted.population_hidden_state SET ref_year = ref_year - 1")
    conn.execute("DELETE FROM restricted.population_hidden")  # would publish everything if read
    total, suppressed = _public(conn, "population_by_building", "building_id", "B000002")
    assert total is None and "total" in suppressed


def test_refresh_is_the_owners(conn: psycopg.Connection) -> None:
    for role in ("onemap_api", "onemap_reader", "onemap_privileged", "public"):
        assert not conn.execute(
            "SELECT has_function_privilege(%s, 'population_hidden_refresh()', 'EXECUTE')", (role,)
        ).fetchone()[0], role
    conn.execute("SET ROLE onemap_reader")
    assert conn.execute("SELECT count(*) FROM population_by_community").fetchone()[0] > 0
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT count(*) FROM restricted.population_hidden")
