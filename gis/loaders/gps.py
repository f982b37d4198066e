"""gps_fixes.parquet (or CSV) -> gps_fixes, in batches: validate in pandas, COPY into a staging table,
INSERT ... SELECT into the month partitions (created as needed).

Default mode appends: a fix whose (device_id, t) is already loaded is reported as ``duplicate``
(so re-running the same file loads 0 and reports every row). ``replace=True`` truncates first.
Triggers stay on but quiet (no NOTIFY); worker_positions is maintained per batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import pyarrow.parquet as pq

from gis.loaders import io
from gis.loaders.db import quiet
from gis.loaders.io import Mapping
from gis.loaders.report import LayerReport

log = logging.getLogger(__name__)

STAGE_COLS = ("row_no", "device_id", "worker_id", "t", "lon", "lat", "speed", "accuracy")
MAX_SPEED_MPS = 100.0  # anything faster is not a patrol (spikes inside this are filtered by analytics)
MAX_ACCURACY_M = 10_000.0


def _batches(path: Path, mapping: Mapping, batch_rows: int, limit: int | None) -> Iterator[pd.DataFrame]:
    offset = 0
    if path.suffix.lower() == ".parquet":
        pf = pq.ParquetFile(path)
        for batch in pf.iter_batches(batch_size=batch_rows):
            df = batch.to_pandas()
            if limit is not None:
                df = df.iloc[: max(0, limit - offset)]
            df.index = pd.RangeIndex(offset, offset + len(df))
            offset += len(df)
            if len(df):
                yield mapping.apply(df)
            if limit is not None and offset >= limit:
                return
    else:
        reader = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], chunksize=batch_rows, nrows=limit)
        for df in reader:
            df.index = pd.RangeIndex(offset, offset + len(df))
            offset += len(df)
            yield mapping.apply(df)


def _validate(df: pd.DataFrame, report: LayerReport, devices: dict[str, str | None], workers: set[str]) -> pd.DataFrame:
    io.require_columns(df, ("device_id", "t", "lon", "lat"), report.source)
    for c in ("worker_id", "speed", "accuracy"):
        if c not in df.columns:
            df[c] = None
    idc = "device_id"
    df["device_id"] = df["device_id"].astype(object).where(df["device_id"].notna(), None)
    df = report.reject_mask(
        df, io.blank(df["device_id"]).to_numpy(), "device_id", "missing_value", "device_id is empty", idc
    )
    df = report.reject_mask(
        df,
        ~df["device_id"].isin(devices.keys()).to_numpy(),
        "device_id",
        "unknown_reference",
        lambda b: [f"device {d} is not in workers.csv" for d in b[idc]],
        idc,
        "device_id",
    )
    wid = df["worker_id"].astype(object).where(~io.blank(df["worker_id"]), None)
    missing_w = wid.isna()
    if missing_w.any():
        wid = wid.where(~missing_w, df["device_id"].map(devices))
        report.repaired["worker_from_device"] += int((missing_w & wid.notna()).sum())
    df["worker_id"] = wid
    df = report.reject_mask(
        df,
        (df["worker_id"].notna() & ~df["worker_id"].isin(workers)).to_numpy(),
        "worker_id",
        "unknown_reference",
        lambda b: [f"worker {w} is not in workers.csv" for w in b["worker_id"]],
        idc,
        "worker_id",
    )
    if pd.api.types.is_datetime64_any_dtype(df["t"]):
        t = df["t"]
        t = t.dt.tz_localize("UTC") if t.dt.tz is None else t.dt.tz_convert("UTC")
    else:
        t = pd.to_datetime(df["t"], utc=True, errors="coerce", format="ISO8601")
        df = report.reject_mask(
            df,
            (t.isna() & ~io.blank(df["t"])).to_numpy(),
            "t",
            "unparsable_value",
            "t is not an ISO-8601 time",
            idc,
            "t",
        )
        t = t[df.index]
    df["t"] = t
    df = report.reject_mask(df, df["t"].isna().to_numpy(), "t", "missing_value", "t is empty", idc)
    df = io.check_numeric(df, report, "lon", lo=io.LON_RANGE[0], hi=io.LON_RANGE[1], required=True, id_col=idc)
    df = io.check_numeric(df, report, "lat", lo=io.LAT_RANGE[0], hi=io.LAT_RANGE[1], required=True, id_col=idc)
    df = io.check_numeric(df, report, "speed", lo=0, hi=MAX_SPEED_MPS, id_col=idc)
    df = io.check_numeric(df, report, "accuracy", lo=0, hi=MAX_ACCURACY_M, id_col=idc)
    df = io.check_unique(df, report, ["device_id", "t"], id_col=idc, reason="duplicate")
    return df


def load_gps(
    conn: psycopg.Connection,
    path: Path,
    mapping: Mapping = Mapping(),
    *,
    replace: bool = False,
    batch_rows: int = 1_000_000,
    limit: int | None = None,
) -> LayerReport:
    """Load fixes; ``limit`` loads only the first N rows of the file (they are then the source)."""
    t0 = time.perf_counter()
    path = Path(path)
    report = LayerReport(layer="gps_fixes", source=str(path))
    devices = dict(conn.execute("SELECT id, worker_id FROM devices").fetchall())
    workers = {r[0] for r in conn.execute("SELECT id FROM workers")}
    quiet(conn)
    if replace:
        conn.execute("TRUNCATE gps_fixes")
        conn.execute("DELETE FROM worker_positions")
    conn.execute("DROP TABLE IF EXISTS stg_gps")
    conn.execute("""CREATE TEMP TABLE stg_gps (row_no bigint, device_id text, worker_id text, t timestamptz,
                    lon double precision, lat double precision, speed real, accuracy real) ON COMMIT DROP""")
    loaded = 0
    for df in _batches(path, mapping, batch_rows, limit):
        report.source_rows += len(df)
        df = _validate(df, report, devices, workers)
        if df.empty:
            continue
        df["row_no"] = df.index.to_numpy()
        df["t"] = df["t"].astype("datetime64[us, UTC]")
        conn.execute(
            "SELECT ensure_gps_partitions(%s, %s)",
            (df["t"].min().to_pydatetime(), df["t"].max().to_pydatetime()),
        )
        conn.execute("TRUNCATE stg_gps")
        io.copy_frame(conn, "stg_gps", df[list(STAGE_COLS)])
        loaded += insert_staged(conn, report)
    report.finish(loaded)
    report.seconds = time.perf_counter() - t0
    return report


_INSERT = """
    INSERT INTO gps_fixes (device_id, worker_id, t, speed, accuracy, geom)
    SELECT device_id, worker_id, t, speed, accuracy, ST_SetSRID(ST_MakePoint(lon, lat), 4490)
      FROM stg_gps
    ON CONFLICT DO NOTHING
"""


class _Conflicts(Exception):
    """Some staged fixes were already loaded (the savepoint is rolled back)."""


def _insert_all_or_nothing(conn: psycopg.Connection) -> int:
    n_staged = conn.execute("SELECT count(*) FROM stg_gps").fetchone()[0]
    with conn.transaction():  # savepoint: rolled back when _Conflicts propagates
        cur = conn.execute(_INSERT)
        if cur.rowcount != n_staged:
            raise _Conflicts()
        return cur.rowcount


def insert_staged(conn: psycopg.Connection, report: LayerReport) -> int:
    """Insert the staged batch; fixes already in the table are reported as duplicates."""
    try:
        return _insert_all_or_nothing(conn)
    except _Conflicts:
        dups = conn.execute("""
            SELECT s.row_no, s.device_id, s.t FROM stg_gps s
             WHERE EXISTS (SELECT 1 FROM gps_fixes g WHERE g.device_id = s.device_id AND g.t = s.t)
             ORDER BY s.row_no""").fetchall()
        rows = np.array([r[0] for r in dups], dtype=np.int64)
        report.reject_rows(
            rows,
            [r[1] for r in dups],
            "t",
            "duplicate",
            [f"fix of {r[1]} at {r[2].isoformat()} is already loaded" for r in dups],
            [r[2].isoformat() for r in dups],
        )
        conn.execute("""DELETE FROM stg_gps s
                         WHERE EXISTS (SELECT 1 FROM gps_fixes g
                                        WHERE g.device_id = s.device_id AND g.t = s.t)""")
        return conn.execute(_INSERT).rowcount
