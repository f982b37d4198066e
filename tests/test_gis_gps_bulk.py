"""Bulk GPS loading: binary COPY, new months filled detached and attached with every index,
duplicates across batches and against the default partition reported, latest positions kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import pytest

from gis.loaders.copy_binary import copy_columns
from gis.loaders.gps import load_gps
from gis.loaders.report import LoadReport
from tests.gis_world import X0, lonlat

T0 = datetime(2031, 1, 31, 23, 59, 50, tzinfo=UTC)  # the load crosses into February 2031


def test_copy_binary_round_trip(conn: psycopg.Connection) -> None:
    conn.execute("CREATE TEMP TABLE bin (a integer, b bigint, c real, d double precision, t timestamptz)")
    t = np.array(["2000-01-01T00:00:00", "1999-12-31T23:59:59.999999", "2031-02-01T12:34:56.789012"], "M8[us]")
    n = copy_columns(
        conn,
        "bin",
        {
            "a": np.array([-1, 0, 2**31 - 1], np.int32),
            "b": np.array([-(2**62), 0, 7], np.int64),
            "c": np.array([1.5, np.nan, -0.25], np.float32),
            "d": np.array([np.pi, -1e300, 0.0]),
            "t": t,
        },
        chunk_rows=2,  # several COPY chunks in one stream
    )
    assert n == 3
    rows = conn.execute("SELECT a, b, c, d, t, c = 'NaN' FROM bin").fetchall()
    assert [r[:2] for r in rows] == [(-1, -(2**62)), (0, 0), (2**31 - 1, 7)]
    assert rows[0][2] == 1.5 and rows[1][5] and rows[2][2] == -0.25
    assert [r[3] for r in rows] == [np.pi, -1e300, 0.0]
    assert [r[4] for r in rows] == [
        datetime(2000, 1, 1, tzinfo=UTC),
        datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2031, 2, 1, 12, 34, 56, 789012, tzinfo=UTC),
    ]


def test_copy_binary_refuses_what_it_cannot_encode(conn: psycopg.Connection) -> None:
    conn.execute("CREATE TEMP TABLE bin2 (t timestamptz, s text)")
    with pytest.raises(ValueError, match="NaT"):
        copy_columns(conn, "bin2", {"t": np.array(["NaT"], "M8[us]")})
    with pytest.raises(TypeError, match="dtype"):
        copy_columns(conn, "bin2", {"s": np.array(["x"], object)})


def _write(path: Path, rows: list[tuple[str, str | None, datetime, float, float]]) -> Path:
    lonlats = [lonlat(x, y) for *_, x, y in rows]
    pd.DataFrame(
        {
            "device_id": [r[0] for r in rows],
            "worker_id": [r[1] for r in rows],
            "t": pd.to_datetime([r[2] for r in rows], utc=True).tz_localize(None),
            "lon": [p[0] for p in lonlats],
            "lat": [p[1] for p in lonlats],
            "speed": [1.0] * len(rows),
            "accuracy": [np.nan] + [4.0] * (len(rows) - 1),
        }
    ).to_parquet(path, index=False)
    return path


def test_new_months_load_detached_and_attach_with_every_index(
    tiny_loaded: LoadReport,
    conn: psycopg.Connection,
    tmp_path: Path,
) -> None:
    # a fix the default partition caught earlier (February 2031 had no partition)
    lon, lat = lonlat(300, 150)
    conn.execute(
        "INSERT INTO gps_fixes (device_id, worker_id, t, geom) "
        "VALUES ('D002', 'W002', %s, ST_SetSRID(ST_MakePoint(%s, %s), 4490))",
        (T0 + timedelta(days=3), lon, lat),
    )
    assert conn.execute("SELECT count(*) FROM gps_fixes_default WHERE t >= '2031-01-01'").fetchone()[0] == 1
    rows = [("D001", "W001", T0 + timedelta(seconds=5 * k), 20.0 + 5 * k, 100.0) for k in range(6)]
    rows.append(("D003", None, T0 + timedelta(seconds=1), 50.0, 50.0))  # worker from the device
    rows.append(("D001", "W001", T0 + timedelta(seconds=10), 999.0, 999.0))  # row 7: repeats row 2, later batch
    rows.append(("D002", "W002", T0 + timedelta(days=3), 300.0, 150.0))  # row 8: the default partition's fix
    rows.append(("D002", "W002", T0 + timedelta(days=2), 310.0, 150.0))
    src = _write(tmp_path / "fixes.parquet", rows)

    rep = load_gps(conn, src, batch_rows=3)  # 4 batches: duplicates are found across them

    assert sorted((r.row, r.reason) for r in rep.rejects) == [(7, "duplicate"), (8, "duplicate")]
    assert rep.loaded == len(rows) - 2 and rep.repaired_by_how()["worker_from_device"] == 1
    parts = dict(
        conn.execute("""
            SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i
              JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'gps_fixes'::regclass AND c.relname LIKE 'gps_fixes_p2031%'""").fetchall()
    )
    assert set(parts) == {"gps_fixes_p203101", "gps_fixes_p203102"}
    assert "2031-02-01 00:00:00+00" in parts["gps_fixes_p203102"]
    for name in parts:
        defs = [r[0] for r in conn.execute("SELECT indexdef FROM pg_indexes WHERE tablename = %s", (name,))]
        assert any("USING gist (geom)" in d for d in defs), defs
        assert any("USING brin (t)" in d for d in defs), defs
        assert any("(worker_id, t)" in d for d in defs), defs
        assert any("UNIQUE" in d and "(device_id, t)" in d for d in defs), defs
        checks = conn.execute(
            "SELECT count(*) FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'c'", (name,)
        ).fetchone()[0]
        assert checks == 0  # the bounds CHECK that spared ATTACH its scan is gone
    assert conn.execute("SELECT count(*) FROM gps_fixes_default WHERE t >= '2031-01-01'").fetchone()[0] == 0
    got = conn.execute(
        "SELECT device_id, worker_id, t, ST_X(geom_4548) FROM gps_fixes WHERE t >= '2031-01-01' ORDER BY t, device_id"
    ).fetchall()
    assert len(got) == rep.loaded + 1  # + the moved fix
    assert ("D003", "W003", T0 + timedelta(seconds=1)) in [g[:3] for g in got]
    d001 = [g for g in got if g[0] == "D001"]
    assert [g[2] for g in d001] == [T0 + timedelta(seconds=5 * k) for k in range(6)]
    assert d001[2][3] == pytest.approx(X0 + 30.0, abs=1e-3)  # the first copy of (D001, T0+10 s) kept
    pos = dict(conn.execute("SELECT worker_id, t FROM worker_positions").fetchall())
    assert pos["W001"] == T0 + timedelta(seconds=25)
    assert pos["W002"] == T0 + timedelta(days=3)
    assert pos["W003"] == T0 + timedelta(seconds=1)

    # the months are attached now: a later load goes through gps_fixes and its trigger
    later = _write(tmp_path / "later.parquet", [("D001", "W001", T0 + timedelta(days=5), 40.0, 100.0)])
    rep2 = load_gps(conn, later)
    assert rep2.loaded == 1 and not rep2.rejects
    assert dict(conn.execute("SELECT worker_id, t FROM worker_positions").fetchall())["W001"] == T0 + timedelta(days=5)

