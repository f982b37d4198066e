"""Loader side of the delivery layer: the reading options of `onemap load`, the vector prelude
every geometry loader runs (``core.delivery`` reading and rules, the same the tiles use), table
checks (numbers, enums, timestamps) and COPY into PostGIS.

A mapping file (YAML, :mod:`core.delivery.mapping`) renames delivered fields to the loader's
field names and recodes values::

    encoding: GBK            # for Shapefiles without .cpg and CSVs
    crs: EPSG:4548           # CRS assumed when the file declares none
    fields: {id: BH, height: JZGD}          # loader field: delivered field
    values: {use: {住宅: residential}}       # loader field: {delivered value: loader value}
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
import shapely
from pyproj import CRS

from core.delivery import rules
from core.delivery.accounting import Accounting
from core.delivery.errors import FieldMissingError
from core.delivery.mapping import FieldMapping, load_mapping
from core.delivery.read import FieldSpec, read_layer
from core.delivery.read import read_table as _read_table
from core.frames import working_crs_for

log = logging.getLogger(__name__)

DELIVERY_CRS = "EPSG:4548"
STORAGE_CRS = "EPSG:4490"
#: Plausible EPSG:4548 coordinates for Bengbu deliveries (x: CM 117E zone, y: ~32.9N), with room
#: for --scale copies laid side by side.
X4548_RANGE = (300_000.0, 800_000.0)
Y4548_RANGE = (3_000_000.0, 4_500_000.0)
LON_RANGE = (73.0, 136.0)  # China
LAT_RANGE = (3.0, 54.0)


@dataclass(frozen=True)
class Mapping(FieldMapping):
    """A delivery's field mapping plus the reading options of `onemap load` (``--encoding``,
    ``--src-crs``, ``--layer``, ``--allow-empty``)."""

    option_encoding: str | None = None
    src_crs: str | None = None
    option_layer: str | None = None
    allow_empty: bool = False

    @classmethod
    def load(cls, path: Path | None, **options: Any) -> Mapping:
        fm = load_mapping(path) if path is not None else FieldMapping()
        return cls(**{f.name: getattr(fm, f.name) for f in fields(FieldMapping)}, **options)

    def apply(self, df: pd.DataFrame) -> pd.DataFrame:
        from core.delivery.mapping import apply_to_table

        return apply_to_table(self, df)


def _opt(mapping: FieldMapping, name: str) -> Any:
    return getattr(mapping, name, None)


def read_vector(
    path: Path, mapping: FieldMapping, report: Accounting, specs: Sequence[FieldSpec], kind: str,
    *, compare: Sequence[str] | None = None, boundary: Path | None = None,
) -> gpd.GeoDataFrame:
    """Read a vector layer (``core.delivery.read_layer``) and apply the delivery rules
    (``core.delivery.rules.clean_features``) in a metric frame chosen from the data, exactly as the
    tile pipelines do; returns the accepted rows in EPSG:4548, indexed by their 0-based source row.

    ``compare``: attributes of the duplicate rule (default: every read field but the id).
    """
    src = read_layer(path, specs, layer_name=report.layer, mapping=mapping, report=report,
                     encoding=_opt(mapping, "option_encoding"), src_crs=_opt(mapping, "src_crs"),
                     layer=_opt(mapping, "option_layer"), expected_crs=None)
    gdf = src.gdf
    geoms = np.asarray(gdf.geometry.values, dtype=object)
    present = ~report.rejected_mask() & ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    working = working_crs_for(shapely.total_bounds(geoms[present]), src.crs) if present.any() else CRS(DELIVERY_CRS)
    work = gpd.GeoSeries(geoms, crs=src.crs)
    work = np.asarray(work.to_crs(working).values, dtype=object) if not src.crs.equals(working) else geoms
    zone = rules.load_boundary(boundary, working) if boundary is not None else None
    names = [s.name for s in specs if s.name != "id"] if compare is None else list(compare)
    cleaned = rules.clean_features(report, work, kind, attrs={c: gdf[c].to_numpy(dtype=object) for c in names},
                                   boundary=zone)
    keep = ~report.rejected_mask()
    out = gdf[keep].copy()
    out = out.set_geometry(gpd.GeoSeries(cleaned[keep], index=out.index, crs=working))
    if kind in ("polygon", "line") and len(out):
        g = out.geometry.to_numpy().copy()
        single = shapely.get_type_id(g) == (3 if kind == "polygon" else 1)
        g[single] = [shapely.multipolygons([x]) if kind == "polygon" else shapely.multilinestrings([x])
                     for x in g[single]]
        out = out.set_geometry(gpd.GeoSeries(g, index=out.index, crs=working))
    if not CRS(working).equals(CRS(DELIVERY_CRS)):
        out = out.to_crs(DELIVERY_CRS)
    return out


def read_table(path: Path, mapping: FieldMapping, report: Accounting, **kwargs: Any) -> pd.DataFrame:
    """CSV (all columns as text, empty = missing; encoding declared or detected) or Parquet;
    index = 0-based data row."""
    return _read_table(path, mapping, report, encoding=_opt(mapping, "option_encoding"), **kwargs)


def refuse_empty(report: Accounting, mapping: FieldMapping, n_valid: int, table: str) -> None:
    """A delivery that would replace a live table with nothing is refused unless ``--allow-empty``."""
    if not _opt(mapping, "allow_empty"):
        report.require_accepted(n_valid, f"loading it would replace the {table} table with nothing",
                                hint="fix the delivery, or pass --allow-empty to empty the table on purpose")


# --- validation helpers (vectorised; each rejects and returns the remaining rows) ---------------------
def require_columns(df: pd.DataFrame, columns: Iterable[str], source: Path | str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise FieldMissingError(source, missing[0], missing[0], [str(c) for c in df.columns],
                                f"map it in a --mapping file (fields: {{{missing[0]}: <delivered field>}})")


def blank(series: pd.Series) -> pd.Series:
    """Missing or whitespace-only. Typed (numeric, time, bool) columns are blank only where null."""
    dtype = series.dtype
    if (
        pd.api.types.is_numeric_dtype(dtype)
        or pd.api.types.is_datetime64_any_dtype(dtype)
        or pd.api.types.is_bool_dtype(dtype)
    ):
        return series.isna()
    return series.isna() | (series.astype(str).str.strip() == "")


def check_required(df: pd.DataFrame, report: Accounting, col: str, id_col: str = "id") -> pd.DataFrame:
    reason = "missing_id" if col == id_col else "missing_value"
    return report.reject_mask(df, blank(df[col]), col, reason, f"{col} is empty", id_col)


def check_unique(
    df: pd.DataFrame,
    report: Accounting,
    cols: Sequence[str],
    id_col: str = "id",
    reason: str = "duplicate_id",
) -> pd.DataFrame:
    dup = df.duplicated(subset=list(cols), keep="first")
    label = "+".join(cols)
    return report.reject_mask(df, dup, cols[0], reason, f"{label} repeats an earlier row", id_col)


def check_numeric(
    df: pd.DataFrame,
    report: Accounting,
    col: str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    required: bool = False,
    integer: bool = False,
    id_col: str = "id",
    lo_open: bool = False,
    reason_range: str = "absurd_value",
) -> pd.DataFrame:
    """Parse ``col`` as a number (in place); reject unparsable, missing (if required), out of range."""
    if col not in df.columns:
        if required:
            raise FieldMissingError(report.source, col, col, [str(c) for c in df.columns],
                                    f"map it in a --mapping file (fields: {{{col}: <delivered field>}})")
        df[col] = np.nan
        return df
    raw = df[col]
    num = pd.to_numeric(raw, errors="coerce")
    unparsable = num.isna() & ~blank(raw)
    df = report.reject_mask(df, unparsable, col, "unparsable_value", f"{col} is not a number", id_col, col)
    num = num[df.index]
    if required:
        df = report.reject_mask(df, num.isna().to_numpy(), col, "missing_value", f"{col} is empty", id_col)
        num = num[df.index]
    bad = pd.Series(False, index=df.index)
    if lo is not None:
        bad |= (num <= lo) if lo_open else (num < lo)
    if hi is not None:
        bad |= num > hi
    if not np.isfinite(num.fillna(0)).all():
        bad |= ~np.isfinite(num.fillna(0))
    rng = f"{'(' if lo_open else '['}{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
    df = report.reject_mask(
        df,
        bad.to_numpy(),
        col,
        reason_range,
        lambda b: [f"{col} {v} outside {rng}" for v in b[col]],
        id_col,
        col,
    )
    num = num[df.index]
    if integer:
        frac = num.notna() & (num != np.round(num))
        df = report.reject_mask(df, frac.to_numpy(), col, "unparsable_value", f"{col} is not an integer", id_col, col)
        num = num[df.index]
        df[col] = num.astype("Int64")
    else:
        df[col] = num.astype(float)
    return df


def check_enum(
    df: pd.DataFrame,
    report: Accounting,
    col: str,
    allowed: Iterable[str],
    *,
    required: bool = True,
    id_col: str = "id",
    reason: str = "unknown_value",
) -> pd.DataFrame:
    allowed_set = set(allowed)
    vals = df[col]
    bad = ~vals.isin(allowed_set)
    if not required:
        bad &= ~blank(vals)
    shown = ", ".join(sorted(allowed_set)) if len(allowed_set) <= 12 else f"{len(allowed_set)} known ids"
    return report.reject_mask(
        df,
        bad.to_numpy(),
        col,
        reason,
        lambda b: [f"{col} {v!r} not in {shown}" for v in b[col]],
        id_col,
        col,
    )


def check_timestamps(
    df: pd.DataFrame,
    report: Accounting,
    cols: Iterable[str],
    *,
    required: Sequence[str] = (),
    id_col: str = "id",
    naive_tz: str = "Asia/Shanghai",
) -> pd.DataFrame:
    """Parse ISO-8601 columns to UTC (naive values are taken in ``naive_tz``)."""
    for col in cols:
        if col not in df.columns:
            df[col] = pd.Series(pd.NaT, index=df.index, dtype="datetime64[ns, UTC]")
            continue
        raw = df[col]
        parsed, empty = _parse_ts_blank(raw, naive_tz)
        bad = parsed.isna() & ~empty
        df = report.reject_mask(
            df, bad.to_numpy(), col, "unparsable_value", f"{col} is not an ISO-8601 time", id_col, col
        )
        parsed = parsed[df.index]
        if col in required:
            df = report.reject_mask(df, parsed.isna().to_numpy(), col, "missing_value", f"{col} is empty", id_col)
            parsed = parsed[df.index]
        df[col] = parsed
    return df


_OFFSET = r"(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$"


def _parse_ts(raw: pd.Series, naive_tz: str) -> pd.Series:
    """ISO-8601 strings (or datetimes) -> UTC; values without an offset are in ``naive_tz``."""
    return _parse_ts_blank(raw, naive_tz)[0]


def _parse_ts_blank(raw: pd.Series, naive_tz: str) -> tuple[pd.Series, pd.Series]:
    """``_parse_ts`` and ``blank(raw)``, stripping each value once (1 M events: 9 columns)."""
    if pd.api.types.is_datetime64_any_dtype(raw):
        s = raw
        if getattr(s.dt, "tz", None) is None:
            return s.dt.tz_localize(naive_tz).dt.tz_convert("UTC"), raw.isna()
        return s.dt.tz_convert("UTC"), raw.isna()
    out = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns, UTC]")
    if pd.api.types.is_numeric_dtype(raw.dtype) or pd.api.types.is_bool_dtype(raw.dtype):
        empty = raw.isna()
        text = raw[~empty].astype(str).str.strip()
    else:
        stripped = raw.astype(str).str.strip()
        empty = raw.isna() | (stripped == "")
        text = stripped[~empty]
    if text.empty:
        return out, empty
    with_offset = text.astype("string[pyarrow]").str.contains(_OFFSET, regex=True).to_numpy(dtype=bool)
    if with_offset.any():
        out.loc[text.index[with_offset]] = pd.to_datetime(
            text[with_offset], utc=True, format="ISO8601", errors="coerce"
        )
    naive = text[~with_offset]
    if len(naive):
        parsed = pd.to_datetime(naive, format="ISO8601", errors="coerce")
        out.loc[naive.index] = parsed.dt.tz_localize(naive_tz, ambiguous="NaT", nonexistent="NaT").dt.tz_convert("UTC")
    return out, empty


def wkb_hex_4490(geoms: gpd.GeoSeries) -> np.ndarray:
    """EPSG:4548 geometries -> hex WKB in EPSG:4490 (what the tables store)."""
    return shapely.to_wkb(geoms.to_crs(STORAGE_CRS).to_numpy(), hex=True)


# --- COPY -------------------------------------------------------------------------------------------
def copy_frame(conn: psycopg.Connection, table: str, df: pd.DataFrame, chunk_rows: int = 200_000) -> int:
    """COPY a DataFrame (columns named like the table's) as CSV; NaN/None -> NULL."""
    if df.empty:
        return 0
    cols = ", ".join(f'"{c}"' for c in df.columns)
    sql = f"COPY {table} ({cols}) FROM STDIN (FORMAT csv)"
    with conn.cursor() as cur, cur.copy(sql) as copy:
        for start in range(0, len(df), chunk_rows):
            part = df.iloc[start : start + chunk_rows]
            tbl = pa.Table.from_pandas(part, preserve_index=False)
            buf = io.BytesIO()
            pacsv.write_csv(tbl, buf, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
            copy.write(buf.getvalue())
    return len(df)


def text_or_none(series: pd.Series) -> pd.Series:
    """Strings stripped, blanks -> None (object dtype)."""
    out = series.astype(object).where(~blank(series), None)
    return out.map(lambda v: v.strip() if isinstance(v, str) else (None if v is None else str(v)))
