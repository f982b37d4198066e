"""Reading deliveries (vector files, CSV, Parquet) with field mappings, and COPY into PostGIS.

A mapping file (YAML, the format of ``pipelines.sources``) renames delivered fields to the
loader's field names and recodes values::

    encoding: GBK            # for Shapefiles without .cpg
    crs: EPSG:4548           # CRS assumed when the file declares none
    fields: {id: BH, height: JZGD}          # loader field: delivered field
    values: {use: {住宅: residential}}       # loader field: {delivered value: loader value}
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
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

from gis.loaders.report import LayerReport
from pipelines import sources

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
class Mapping:
    """Field mapping of a delivery; vector files use ``pipelines.sources`` (same reader and mapping
    format as the tiles pipelines), tables (CSV/Parquet) are renamed/recoded here."""

    fields: dict[str, str] = field(default_factory=dict)
    values: dict[str, dict[str, Any]] = field(default_factory=dict)
    encoding: str | None = None
    crs: str | None = None
    path: Path | None = None

    @classmethod
    def load(cls, path: Path | None) -> Mapping:
        if path is None:
            return cls()
        fm = sources.load_mapping(path)
        return cls(fields=dict(fm.fields), values=dict(fm.values), encoding=fm.encoding, crs=fm.crs, path=Path(path))

    def field_mapping(self) -> sources.FieldMapping:
        return sources.load_mapping(self.path) if self.path else sources.FieldMapping()

    def apply(self, df: pd.DataFrame) -> pd.DataFrame:
        rename = {src: dst for dst, src in self.fields.items() if src in df.columns and src != dst}
        df = df.rename(columns=rename)
        for col, table in self.values.items():
            if col in df.columns:
                df[col] = df[col].map(lambda v, t=table: t.get(v, v) if isinstance(v, str) else v)
        return df


def read_vector(
    path: Path, mapping: Mapping, report: LayerReport, specs: Sequence[sources.FieldSpec]
) -> gpd.GeoDataFrame:
    """Read a vector layer with ``pipelines.sources.read_layer`` (canonical columns, lenient
    numbers, encoding and CRS checks), carry its rejects over, reproject to EPSG:4548.

    The index is the 0-based source row.
    """
    try:
        src = sources.read_layer(path, specs, layer_name=report.layer, mapping=mapping.field_mapping())
    except sources.EmptyLayerError:
        report.note(f"{Path(path).name} has no features")
        return gpd.GeoDataFrame({s.name: [] for s in specs}, geometry=[], crs=DELIVERY_CRS)
    report.source_rows = src.report.n_input
    for note in src.report.notes:
        report.note(note)
    for how, n in src.report.repaired_by_how().items():
        report.repaired[how] += n
    gdf = src.gdf
    if src.report.rejected:
        rows = sorted(src.report.rejected)
        for r in rows:
            issue = src.report.rejected[r]
            report.reject_rows([r], [issue.id], issue.field, issue.code, issue.message, [issue.value])
        gdf = gdf.drop(index=rows)
    if not src.crs.equals(CRS.from_user_input(DELIVERY_CRS), ignore_axis_order=True):
        gdf = gdf.to_crs(DELIVERY_CRS)
    return gdf


def read_table(path: Path, mapping: Mapping, report: LayerReport, **kwargs: Any) -> pd.DataFrame:
    """CSV (all columns as text, empty = missing) or Parquet; index = 0-based data row."""
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        df = pd.read_parquet(path, **kwargs)
    else:
        df = pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            encoding=mapping.encoding or "utf-8",
            **kwargs,
        )
    df = df.reset_index(drop=True)
    report.source_rows = len(df)
    return mapping.apply(df)


# --- validation helpers (vectorised; each rejects and returns the remaining rows) ---------------------
def require_columns(df: pd.DataFrame, columns: Iterable[str], source: Path | str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(
            f"{Path(source).name}: missing field(s) {', '.join(missing)}; "
            f"found {', '.join(map(str, df.columns))}"
            " (use --mapping to rename delivered fields)"
        )


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


def check_required(df: pd.DataFrame, report: LayerReport, col: str, id_col: str = "id") -> pd.DataFrame:
    reason = "missing_id" if col == id_col else "missing_value"
    return report.reject_mask(df, blank(df[col]), col, reason, f"{col} is empty", id_col)


def check_unique(
    df: pd.DataFrame,
    report: LayerReport,
    cols: Sequence[str],
    id_col: str = "id",
    reason: str = "duplicate_id",
) -> pd.DataFrame:
    dup = df.duplicated(subset=list(cols), keep="first")
    label = "+".join(cols)
    return report.reject_mask(df, dup, cols[0], reason, f"{label} repeats an earlier row", id_col)


def check_numeric(
    df: pd.DataFrame,
    report: LayerReport,
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
            raise ValueError(f"{report.file}: missing field {col}")
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
    report: LayerReport,
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
    report: LayerReport,
    cols: Iterable[str],
    *,
    required: Sequence[str] = (),
    id_col: str = "id",
    naive_tz: str = "Asia/Shanghai",
) -> pd.DataFrame:
    """Parse ISO-8601 columns to UTC (naive values are taken in ``naive_tz``)."""
    for col in cols:
        if col not in df.columns:
            df[col] = pd.NaT
            continue
        raw = df[col]
        parsed = _parse_ts(raw, naive_tz)
        bad = parsed.isna() & ~blank(raw)
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
    if pd.api.types.is_datetime64_any_dtype(raw):
        s = raw
        if getattr(s.dt, "tz", None) is None:
            return s.dt.tz_localize(naive_tz).dt.tz_convert("UTC")
        return s.dt.tz_convert("UTC")
    out = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns, UTC]")
    text = raw.where(~blank(raw)).astype(object)
    has = text.notna()
    if not has.any():
        return out
    text = text[has].astype(str).str.strip()
    with_offset = text.str.contains(_OFFSET, regex=True)
    if with_offset.any():
        out.loc[with_offset[with_offset].index] = pd.to_datetime(
            text[with_offset], utc=True, format="ISO8601", errors="coerce"
        )
    naive = text[~with_offset]
    if len(naive):
        parsed = pd.to_datetime(naive, format="ISO8601", errors="coerce")
        out.loc[naive.index] = parsed.dt.tz_localize(naive_tz, ambiguous="NaT", nonexistent="NaT").dt.tz_convert("UTC")
    return out


def check_geometry(gdf: gpd.GeoDataFrame, report: LayerReport, kind: str, id_col: str = "id") -> gpd.GeoDataFrame:
    """Reject empty/wrong-type geometries, repair invalid ones with make_valid when possible.

    ``kind``: ``polygon`` | ``line`` | ``point``. Polygons/lines are returned as Multi*.
    """
    geoms = gdf.geometry.to_numpy()
    empty = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    gdf = report.reject_mask(gdf, empty, "geometry", "empty_geometry", "no geometry", id_col)
    types = {
        "polygon": {"Polygon", "MultiPolygon"},
        "line": {"LineString", "MultiLineString"},
        "point": {"Point"},
    }[kind]
    gtype = gdf.geometry.geom_type
    gdf = report.reject_mask(
        gdf,
        ~gtype.isin(types).to_numpy(),
        "geometry",
        "wrong_geometry_type",
        lambda b: [f"{t} is not a {kind}" for t in b.geometry.geom_type],
        id_col,
    )
    if kind == "point":
        return gdf
    geoms = gdf.geometry.to_numpy()
    invalid = ~shapely.is_valid(geoms)
    if invalid.any():
        reasons = shapely.is_valid_reason(geoms[invalid])
        fixed = shapely.make_valid(geoms[invalid])
        part = {"polygon": 3, "line": 1}[kind]
        fixed = np.array([_extract(g, part) for g in fixed], dtype=object)
        ok = np.array([g is not None and not g.is_empty for g in fixed])
        rows_invalid = np.flatnonzero(invalid)
        bad_mask = np.zeros(len(gdf), dtype=bool)
        bad_mask[rows_invalid[~ok]] = True
        bad_reasons = dict(zip(gdf.index[rows_invalid].tolist(), reasons.tolist(), strict=True))
        new_geoms = geoms.copy()
        new_geoms[rows_invalid[ok]] = fixed[ok]
        gdf = gdf.set_geometry(gpd.GeoSeries(new_geoms, index=gdf.index, crs=gdf.crs))
        report.repaired["make_valid"] += int(ok.sum())
        # make_valid keeps all the area (length) there is: nothing of the right type left means the
        # feature has collapsed, which is what the zero-area / zero-length checks below report too
        collapsed = "zero_area" if kind == "polygon" else "zero_length"
        gdf = report.reject_mask(
            gdf,
            bad_mask,
            "geometry",
            collapsed,
            lambda b: [f"invalid geometry ({bad_reasons[i]}) has no {kind} left after make_valid" for i in b.index],
            id_col,
        )
    geoms = gdf.geometry.to_numpy()
    if kind == "polygon":
        gdf = report.reject_mask(
            gdf, shapely.area(geoms) < 0.01, "geometry", "zero_area", "polygon area < 0.01 m²", id_col
        )
        multi = shapely.get_type_id(gdf.geometry.to_numpy()) == 3
    else:
        gdf = report.reject_mask(
            gdf, shapely.length(geoms) < 0.01, "geometry", "zero_length", "line length < 0.01 m", id_col
        )
        multi = shapely.get_type_id(gdf.geometry.to_numpy()) == 1
    if multi.any():
        g = gdf.geometry.to_numpy().copy()
        g[multi] = [
            shapely.multipolygons([x]) if kind == "polygon" else shapely.multilinestrings([x]) for x in g[multi]
        ]
        gdf = gdf.set_geometry(gpd.GeoSeries(g, index=gdf.index, crs=gdf.crs))
    return gdf


def _extract(geom: Any, dim_type: int) -> Any:
    """The polygonal (3) or lineal (1) part of a make_valid result, or None."""
    if geom is None:
        return None
    if shapely.get_type_id(geom) in (dim_type, dim_type + 3):
        return geom
    if shapely.get_type_id(geom) == 7:
        parts = [p for p in geom.geoms if shapely.get_type_id(p) in (dim_type, dim_type + 3)]
        if not parts:
            return None
        merged = shapely.union_all(parts)
        return merged if shapely.get_type_id(merged) in (dim_type, dim_type + 3) else None
    return None


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
