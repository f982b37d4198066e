"""Loaders: every rejected row is reported, counts add up, reloads are idempotent."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from gis.loaders import load_layer, load_sample
from gis.loaders.report import LoadReport
from tests import gis_world
from tests.gis_helpers import libpq


def test_rejects_reported_and_counts_add_up(tiny_loaded: LoadReport, tiny_delivery: Path) -> None:
    got = {(layer.layer, r.feature_id, r.reason) for layer in tiny_loaded.layers for r in layer.rejects}
    assert got == gis_world.EXPECTED_REJECTS
    for layer in tiny_loaded.layers:
        assert layer.loaded == layer.source_rows - len(layer.rejects), layer.layer
        for r in layer.rejects:
            assert r.file and r.message.startswith(r.file), r
    path = tiny_loaded.write_json(tiny_delivery / "report.json")
    data = json.loads(path.read_text())
    assert data["total_rejected"] == len(gis_world.EXPECTED_REJECTS)
    assert {r["reason"] for layer in data["layers"] for r in layer["rejects"]} >= {
        "duplicate",
        "absurd_height",
    }


def test_loaded_rows_match_source(tiny_loaded: LoadReport, conn: psycopg.Connection) -> None:
    counts = {layer.layer: layer.loaded for layer in tiny_loaded.layers}
    for table, layer in [
        ("buildings", "buildings"),
        ("events", "events"),
        ("restricted.persons", "population"),
        ("gps_fixes", "gps_fixes"),
        ("cameras", "cameras"),
        ("roads", "roads"),
    ]:
        n = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        assert n == counts[layer], table
    # ids carried unchanged (the 3D tiles use the same ids)
    ids = {r[0] for r in conn.execute("SELECT id FROM buildings")}
    assert ids == {b[0] for b in gis_world.BUILDINGS}


def test_spatial_assignment(tiny_loaded: LoadReport, conn: psycopg.Connection) -> None:
    b = dict(conn.execute("SELECT id, grid_id || '/' || community_id FROM buildings").fetchall())
    assert b["B000001"] == "G001/C01" and b["B000003"] == "G002/C02" and b["B000004"] == "G004/C02"
    e = {r[0]: r[1:] for r in conn.execute("SELECT id, building_id, grid_id, community_id FROM events")}
    assert e["E0000001"] == ("B000001", "G001", "C01")  # inside B000001
    assert e["E0000004"] == (None, "G004", "C02")
    # stored in 4490, metric copy in 4548 matches the delivered coordinates
    x, y = conn.execute(
        "SELECT ST_X(geom_4548), ST_Y(geom_4548) FROM events WHERE id = 'E0000001'"
    ).fetchone()
    assert x == pytest.approx(gis_world.X0 + 50, abs=1e-3) and y == pytest.approx(gis_world.Y0 + 50, abs=1e-3)


def test_history_synthesised_from_timestamps(tiny_loaded: LoadReport, conn: psycopg.Connection) -> None:
    rows = conn.execute(
        "SELECT from_status, to_status FROM event_status_history WHERE event_id = 'E0000001' ORDER BY at"
    ).fetchall()
    assert rows == [
        (None, "reported"),
        ("reported", "accepted"),
        ("accepted", "dispatched"),
        ("dispatched", "handled"),
        ("handled", "verified"),
        ("verified", "closed"),
    ]
    rej = conn.execute(
        "SELECT to_status FROM event_status_history WHERE event_id = 'E0000005' ORDER BY at"
    ).fetchall()
    assert [r[0] for r in rej] == ["reported", "rejected"]


def test_reload_is_idempotent(tiny_loaded: LoadReport, tiny_delivery: Path, pg_url: str) -> None:
    again = load_sample(tiny_delivery, url=libpq(pg_url))
    assert [(x.layer, x.loaded, len(x.rejects)) for x in again.layers] == [
        (x.layer, x.loaded, len(x.rejects)) for x in tiny_loaded.layers
    ]
    assert again.derived["alarms"] == tiny_loaded.derived["alarms"]


def test_gps_append_reports_already_loaded(tiny_loaded: LoadReport, tiny_delivery: Path, pg_url: str) -> None:
    before = {x.layer: x for x in tiny_loaded.layers}["gps_fixes"]
    rep = load_layer("gps", tiny_delivery / "clean" / "gps_fixes.parquet", url=libpq(pg_url)).layers[0]
    assert rep.loaded == 0
    assert len(rep.rejects) == rep.source_rows == before.source_rows
    assert {r.reason for r in rep.rejects} == {"duplicate", "unknown_reference", "missing_value"}
    rep = load_layer("gps", tiny_delivery / "clean" / "gps_fixes.parquet", url=libpq(pg_url), replace=True)
    assert rep.layers[0].loaded == before.loaded


def test_layer_with_mapping(tmp_path: Path, pg_url: str, conn: psycopg.Connection) -> None:
    """A delivery with pinyin field names, mapped by a YAML file."""
    import geopandas as gpd

    root = gis_world.write_delivery(tmp_path / "d")
    gdf = gpd.read_file(root / "clean" / "cameras.gpkg")
    gdf = gdf.rename(columns={"id": "BH", "mount_height": "AZGD", "range_m": "JL"})
    src = tmp_path / "cams.gpkg"
    gdf.to_file(src, layer="cams", driver="GPKG")
    mapping = tmp_path / "m.yaml"
    mapping.write_text("fields: {id: BH, mount_height: AZGD, range_m: JL}\n", encoding="utf-8")
    rep = load_layer("cameras", src, mapping=mapping, url=libpq(pg_url))
    assert rep.layers[0].loaded == len(gis_world.CAMERAS)
    assert conn.execute("SELECT mount_height FROM cameras WHERE id = 'CAM0003'").fetchone()[0] == 120.0


def test_reload_keeps_buildings_people_live_in(
    tiny_loaded: LoadReport, tiny_delivery: Path, conn: psycopg.Connection, tmp_path: Path
) -> None:
    """A buildings delivery without a building that residents are registered in keeps that row
    (and says so) while a building nobody lives in is removed; all rolled back afterwards."""
    import geopandas as gpd

    from gis.loaders.io import Mapping
    from gis.loaders.reference import load_buildings

    lived_in = {r[0] for r in conn.execute("SELECT DISTINCT building_id FROM restricted.persons")}
    assert "B000001" in lived_in and "B000005" not in lived_in
    gdf = gpd.read_file(tiny_delivery / "clean" / "buildings.gpkg")
    gdf[~gdf["id"].isin(["B000001", "B000005"])].to_file(tmp_path / "b.gpkg", layer="buildings")
    rep = load_buildings(conn, tmp_path / "b.gpkg", Mapping())
    ids = {r[0] for r in conn.execute("SELECT id FROM buildings")}
    assert "B000001" in ids and "B000005" not in ids
    assert any(n.startswith("1 buildings absent from this delivery were kept") for n in rep.notes), rep.notes
    persons = conn.execute("SELECT count(*) FROM restricted.persons WHERE building_id = 'B000001'").fetchone()[0]
    assert persons > 0


def test_event_load_restores_trigger_indexes_and_foreign_keys(
    tiny_loaded: LoadReport, conn: psycopg.Connection
) -> None:
    """After an events load the triggers, foreign keys and secondary indexes of events/history are
    all there and enforced, as migrated (the loader replaces rows, never the schema)."""
    state = conn.execute(
        "SELECT tgenabled FROM pg_trigger WHERE tgname = 'events_before_insert' AND tgrelid = 'events'::regclass"
    ).fetchone()
    assert state == ("O",)
    fks = {r[0] for r in conn.execute(
        "SELECT conname FROM pg_constraint WHERE contype = 'f' AND conrelid IN ('events'::regclass, "
        "'event_status_history'::regclass)")}
    assert fks == {"events_category_fkey", "events_worker_id_fkey", "events_building_id_fkey",
                   "events_grid_id_fkey", "events_community_id_fkey", "event_status_history_event_id_fkey"}
    indexes = {r[0] for r in conn.execute(
        "SELECT indexname FROM pg_indexes WHERE tablename IN ('events', 'event_status_history')")}
    assert indexes >= {"events_reported_at_cover_idx", "events_geom_4548_gix", "events_open_deadline_idx",
                       "event_status_history_event_id_at_idx", "event_status_history_at_brin", "events_pkey"}
    with pytest.raises(psycopg.errors.ForeignKeyViolation):  # the constraint is enforced again
        conn.execute("INSERT INTO event_status_history (event_id, to_status, at) VALUES ('nope', 'reported', now())")
    conn.rollback()
    x, y = gis_world.xy(50, 50)  # inside B000001, grid G001
    conn.execute(
        """INSERT INTO events (id, category, priority, source, geom)
           VALUES ('ETRIG', 'sanitation', 'A', 'resident',
                   ST_Transform(ST_SetSRID(ST_MakePoint(%s, %s), 4548), 4490))""",
        (x, y),
    )
    got = conn.execute("SELECT building_id, grid_id, deadline_at IS NOT NULL FROM events WHERE id = 'ETRIG'").fetchone()
    assert got == ("B000001", "G001", True)


def test_event_load_locates_like_locate_point(tiny_loaded: LoadReport, conn: psycopg.Connection) -> None:
    """The loader's set-based location (gis/sql/events/load_ready.sql) is what the insert trigger's
    locate_point() gives for every loaded event."""
    differ = conn.execute(
        """SELECT e.id FROM events e CROSS JOIN LATERAL locate_point(e.geom_4548) l
            WHERE (e.building_id, e.grid_id, e.community_id)
                  IS DISTINCT FROM (l.building_id, l.grid_id, l.community_id)"""
    ).fetchall()
    assert differ == []
    assert conn.execute("SELECT count(*) FROM events WHERE building_id IS NOT NULL").fetchone()[0] > 0


def test_located_setting_only_spares_the_lookup(tiny_loaded: LoadReport, conn: psycopg.Connection) -> None:
    """onemap.located (set by the events loader for its INSERT, migration 0012) keeps
    events_before_insert from looking up a location the caller left empty; the deadline is still
    filled in; without the setting an insert is located as before."""
    x, y = gis_world.xy(50, 50)  # inside B000001, grid G001
    insert = """INSERT INTO events (id, category, priority, source, geom)
                VALUES (%s, 'sanitation', 'A', 'resident',
                        ST_Transform(ST_SetSRID(ST_MakePoint(%s, %s), 4548), 4490))"""
    got = "SELECT building_id, grid_id, community_id, deadline_at IS NOT NULL FROM events WHERE id = %s"
    try:
        conn.execute("SELECT set_config('onemap.located', 'on', true)")
        conn.execute(insert, ("ELOCATED", x, y))
        assert conn.execute(got, ("ELOCATED",)).fetchone() == (None, None, None, True)
        conn.execute("SELECT set_config('onemap.located', '', true)")
        conn.execute(insert, ("EPLAIN", x, y))
        assert conn.execute(got, ("EPLAIN",)).fetchone() == ("B000001", "G001", "C01", True)
    finally:
        conn.rollback()
