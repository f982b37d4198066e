"""COPY fixed-width numpy columns in PostgreSQL's binary format, encoded without a Python loop per row.

Text CSV costs ~7 s per million GPS fixes (formatting timestamps and floats, then parsing them
again server-side); the binary tuples here are one structured numpy array written as is. Only
non-null fixed-width columns are supported: callers encode text as integer codes and nulls as
NaN or a sentinel, and decode them in SQL.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import psycopg
from psycopg import sql

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
TRAILER = (-1).to_bytes(2, "big", signed=True)
PG_EPOCH_US = np.datetime64("2000-01-01T00:00:00", "us").astype(np.int64)

# numpy kind+size -> big-endian wire dtype
_WIRE = {("i", 4): ">i4", ("i", 8): ">i8", ("f", 4): ">f4", ("f", 8): ">f8"}


def _wire(values: np.ndarray) -> tuple[str, np.ndarray]:
    if np.issubdtype(values.dtype, np.datetime64):  # -> timestamptz: µs since 2000-01-01 UTC
        if np.isnat(values).any():
            raise ValueError("NaT cannot be copied in binary; reject or fill it first")
        return ">i8", values.astype("datetime64[us]").astype(np.int64) - PG_EPOCH_US
    key = (values.dtype.kind, values.dtype.itemsize)
    if key not in _WIRE:
        raise TypeError(f"no binary COPY encoding for dtype {values.dtype}")
    return _WIRE[key], values


def wire_columns(columns: Sequence[np.ndarray]) -> list[tuple[str, np.ndarray]]:
    """(big-endian wire dtype, values) per column; raises before anything is sent."""
    n = len(columns[0]) if len(columns) else 0
    out = []
    for col in columns:
        if len(col) != n:
            raise ValueError("columns differ in length")
        out.append(_wire(np.asarray(col)))
    return out


def encode(wired: Sequence[tuple[str, np.ndarray]], start: int = 0, stop: int | None = None) -> bytes:
    """The tuples ``start:stop`` of a binary COPY stream (no signature or trailer)."""
    parts = [(dtype, values[start:stop]) for dtype, values in wired]
    n = len(parts[0][1])
    fields: list[tuple[str, str]] = [("nfields", ">i2")]
    for k, (dtype, _) in enumerate(parts):
        fields += [(f"len{k}", ">i4"), (f"v{k}", dtype)]
    rows = np.empty(n, dtype=np.dtype(fields))
    rows["nfields"] = len(parts)
    for k, (dtype, values) in enumerate(parts):
        rows[f"len{k}"] = np.dtype(dtype).itemsize
        rows[f"v{k}"] = values
    return rows.tobytes()


def copy_columns(
    conn: psycopg.Connection,
    table: str,
    columns: dict[str, np.ndarray],
    chunk_rows: int = 500_000,
) -> int:
    """COPY ``columns`` ({column name: values}) into ``table`` in binary; returns the rows sent.

    Dtypes and NaT are checked before the COPY starts, so a refused column leaves the transaction usable.
    """
    names = list(columns)
    wired = wire_columns([columns[c] for c in names])
    n = len(wired[0][1]) if wired else 0
    if n == 0:
        return 0
    stmt = sql.SQL("COPY {t} ({cols}) FROM STDIN (FORMAT binary)").format(
        t=sql.Identifier(table), cols=sql.SQL(", ").join(map(sql.Identifier, names))
    )
    with conn.cursor() as cur, cur.copy(stmt) as copy:
        copy.write(SIGNATURE)
        for start in range(0, n, chunk_rows):
            copy.write(encode(wired, start, start + chunk_rows))
        copy.write(TRAILER)
    return n
