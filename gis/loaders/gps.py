"""gps_fixes/ (one file per month) or one gps_fixes.parquet / CSV -> gps_fixes, in batches: validate
in pandas, COPY into a staging table, INSERT ... SELECT into the month partitions. Months without a
partition are filled detached and attached at the end of the load, which builds their indexes in one
pass (see ``gps_partitions``).

Default mode appends: a fix whose (device_id, t) is already loaded is reported as ``duplicate``
(so re-running the same file loads 0 and reports every row). ``replace=True`` fills every month
into a new detached table and swaps them in at the end in one short locked step (``gps_replace``):
readers keep the old fixes until the load commits.
Triggers stay on but quiet (no NOTIFY); worker_positions is maintained per batch (by the parent's
statement trigger) and, for the new months, when they are attached.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import pyarrow.parquet as pq
from psycopg import sql

from core.errors import InputError
from gis.loaders import io
from gis.loaders.copy_binary import copy_columns
from gis.loaders.db import quiet
from gis.loaders.gps_partitions import FreshMonth, MonthPartitions
from gis.loaders.gps_replace import ReplacementMonths
from gis.loaders.io import Mapping
from gis.loaders.report import LayerReport

log = logging.getLogger(__name__)

MAX_SPEED_MPS = 100.0  # anything faster is not a patrol (spikes inside this are filtered by analytics)
MAX_ACCURACY_M = 10_000.0


def _sources(path: Path) -> list[Path]:
    """A file, or a folder of month files (``gps_fixes/YYYY-MM.parquet`` or ``.csv``) in name order."""
    if not path.is_dir():
        return [path]
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".parquet", ".csv"))
    if not files:
        raise InputError(f"{path}: no .parquet or .csv GPS files in this folder")
    return files


def _batches(path: Path, mapping: Mapping, batch_rows: int, limit: int | None) -> Iterator[pd.DataFrame]:
    """Batches of every source file; row numbers run on across the files of a folder."""
    offset = 0
    for src in _sources(path):
        for df in _file_batches(src, mapping, batch_rows, None if limit is None else limit - offset):
            df.index = pd.RangeIndex(offset, offset + len(df))
            offset += len(df)
            yield df
        if limit is not None and offset >= limit:
            return


def _file_batches(path: Path, mapping: Mapping, batch_rows: int, limit: int | None) -> Iterator[pd.DataFrame]:
    offset = 0
    if limit is not None and limit <= 0:
        return
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
        encoding = getattr(mapping, "option_encoding", None) or mapping.encoding or "utf-8"
        reader = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], chunksize=batch_rows, nrows=limit,
                             encoding=encoding)
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
    known = df["device_id"].isin(devices.keys()).to_numpy()  # blank() only where needed: it is slow on strings
    empty = np.zeros(len(df), dtype=bool)
    empty[~known] = io.blank(df["device_id"][~known]).to_numpy()
    df = report.reject_mask(df, empty, "device_id", "missing_value", "device_id is empty", idc)
    df = report.reject_mask(
        df,
        ~df["device_id"].isin(devices.keys()).to_numpy(),
        "device_id",
        "unknown_reference",
        lambda b: [f"device {d} is not in workers.csv" for d in b[idc]],
        idc,
        "device_id",
    )
    wid = df["worker_id"].astype(object)
    other = (~wid.isin(workers)).to_numpy()
    blank_w = np.zeros(len(wid), dtype=bool)
    blank_w[other] = io.blank(wid[other]).to_numpy(dtype=bool)
    wid = wid.where(~blank_w, None)
    missing_w = wid.isna()
    if missing_w.any():
        wid = wid.where(~missing_w, df["device_id"].map(devices))
        report.count_repair("worker_from_device", int((missing_w & wid.notna()).sum()))
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
    codes = _StageCodes(conn, sorted(devices), sorted(workers))
    # replace: every month into a new detached table, swapped in at the end (readers see the old
    # fixes meanwhile); append: new months detached, the others through the parent
    months = ReplacementMonths(conn) if replace else MonthPartitions(conn)
    loaded = 0
    for df in _batches(path, mapping, batch_rows, limit):
        report.source_rows += len(df)
        df = _validate(df, report, devices, workers)
        if df.empty:
            continue
        t_utc = df["t"].astype("datetime64[us, UTC]")
        fresh = months.prepare(t_utc.min().to_pydatetime(), t_utc.max().to_pydatetime())
        conn.execute("TRUNCATE stg_gps")
        copy_columns(
            conn,
            "stg_gps",
            {
                "row_no": df.index.to_numpy(np.int64),
                "dev": codes.devices.get_indexer(df["device_id"]).astype(np.int32),
                "wrk": codes.workers.get_indexer(df["worker_id"]).astype(np.int32),  # -1: none
                "t": t_utc.dt.tz_localize(None).to_numpy("datetime64[us]"),
                "lon": df["lon"].to_numpy(np.float64),
                "lat": df["lat"].to_numpy(np.float64),
                "speed": df["speed"].to_numpy(np.float32, na_value=np.nan),
                "accuracy": df["accuracy"].to_numpy(np.float32, na_value=np.nan),
            },
        )
        loaded += insert_staged(conn, report, fresh, through_parent=not replace)
    if replace:
        report.notes.append(f"gps_fixes locked for the swap: {months.swap():.3f} s")  # type: ignore[union-attr]
    else:
        months.attach_all()  # type: ignore[union-attr]
    report.finish(loaded)
    report.seconds = time.perf_counter() - t0
    return report


class _StageCodes:
    """The staging table holds devices and workers as int codes (binary COPY is fixed-width only)."""

    def __init__(self, conn: psycopg.Connection, devices: list[str], workers: list[str]) -> None:
        self.devices, self.workers = pd.Index(devices), pd.Index(workers)
        conn.execute("DROP TABLE IF EXISTS stg_gps, stg_gps_devices, stg_gps_workers")
        conn.execute("""CREATE TEMP TABLE stg_gps (row_no bigint, dev integer, wrk integer, t timestamptz,
                        lon double precision, lat double precision, speed real, accuracy real) ON COMMIT DROP""")
        for table, ids in (("stg_gps_devices", devices), ("stg_gps_workers", workers)):
            conn.execute(
                sql.SQL("CREATE TEMP TABLE {} (code integer PRIMARY KEY, id text NOT NULL) ON COMMIT DROP").format(
                    sql.Identifier(table)
                )
            )
            with conn.cursor().copy(sql.SQL("COPY {} (code, id) FROM STDIN").format(sql.Identifier(table))) as cp:
                for code, id_ in enumerate(ids):
                    cp.write_row((code, id_))


# stg_gps decoded: device and worker ids back from their codes, NaN speed/accuracy -> NULL
_STAGED = """
    SELECT s.row_no, d.id AS device_id, w.id AS worker_id, s.t, NULLIF(s.speed, 'NaN') AS speed,
           NULLIF(s.accuracy, 'NaN') AS accuracy, s.lon, s.lat
      FROM stg_gps s JOIN stg_gps_devices d ON d.code = s.dev LEFT JOIN stg_gps_workers w ON w.code = s.wrk"""
_SELECT_STAGED = sql.SQL(
    "SELECT device_id, worker_id, t, speed, accuracy, ST_SetSRID(ST_MakePoint(lon, lat), 4490) "
    "FROM (" + _STAGED + ") s WHERE {where}"
)


def _inserts(fresh: list[FreshMonth], through_parent: bool = True) -> list[sql.Composed]:
    """One INSERT per fresh month (straight into its detached table) and one through the parent for
    the rest (none when every month of the batch is fresh: a replacing load)."""
    cols = sql.SQL("(device_id, worker_id, t, speed, accuracy, geom)")
    out, rest = [], []
    for fm in fresh:
        in_month = sql.SQL("t >= {lo} AND t < {hi}").format(lo=sql.Literal(fm.lo), hi=sql.Literal(fm.hi))
        # no ON CONFLICT (speculative insertion costs ~5 s per million): nobody else sees this table,
        # so a unique violation can only be a fix loaded earlier in this load -> the duplicate path
        out.append(
            sql.SQL("INSERT INTO {t} {cols} {sel}").format(
                t=fm.ident, cols=cols, sel=_SELECT_STAGED.format(where=in_month)
            )
        )
        rest.append(sql.SQL("NOT ({})").format(in_month))
    if not through_parent:
        return out
    where = sql.SQL(" AND ").join(rest) if rest else sql.SQL("true")
    out.append(
        sql.SQL("INSERT INTO gps_fixes {cols} {sel} ON CONFLICT DO NOTHING").format(
            cols=cols, sel=_SELECT_STAGED.format(where=where)
        )
    )
    return out


class _Conflicts(Exception):
    """Some staged fixes were already loaded (the savepoint is rolled back)."""


def _insert_all_or_nothing(conn: psycopg.Connection, inserts: list[sql.Composed]) -> int:
    n_staged = conn.execute("SELECT count(*) FROM stg_gps").fetchone()[0]
    try:
        with conn.transaction():  # savepoint: rolled back when _Conflicts propagates
            n = sum(conn.execute(q).rowcount for q in inserts)
            if n != n_staged:
                raise _Conflicts()
            return n
    except psycopg.errors.UniqueViolation as exc:
        raise _Conflicts() from exc


def insert_staged(
    conn: psycopg.Connection, report: LayerReport, fresh: Sequence[FreshMonth] = (), *, through_parent: bool = True
) -> int:
    """Insert the staged batch; fixes already loaded (in gps_fixes or a fresh month) are reported as
    duplicates. ``through_parent=False`` (a replacing load): the fresh months cover every staged
    fix, and the live gps_fixes (about to be replaced) is neither written nor compared with."""
    inserts = _inserts(list(fresh), through_parent)
    try:
        return _insert_all_or_nothing(conn, inserts)
    except _Conflicts:
        pass
    exists = sql.SQL(" OR ").join(
        sql.SQL("EXISTS (SELECT 1 FROM {t} g WHERE g.device_id = s.device_id AND g.t = s.t)").format(t=t)
        for t in [*([sql.Identifier("gps_fixes")] if through_parent else []), *(fm.ident for fm in fresh)]
    )
    dups = conn.execute(
        sql.SQL("SELECT s.row_no, s.device_id, s.t FROM (" + _STAGED + ") s WHERE {e} ORDER BY s.row_no").format(
            e=exists
        )
    ).fetchall()
    rows = np.array([r[0] for r in dups], dtype=np.int64)
    report.reject_rows(
        rows,
        [r[1] for r in dups],
        "t",
        "duplicate",
        [f"fix of {r[1]} at {r[2].isoformat()} is already loaded" for r in dups],
        [r[2].isoformat() for r in dups],
    )
    conn.execute(
        sql.SQL("DELETE FROM stg_gps WHERE row_no IN (SELECT s.row_no FROM (" + _STAGED + ") s WHERE {e})").format(
            e=exists
        )
    )
    return sum(conn.execute(q).rowcount for q in inserts)
