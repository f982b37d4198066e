"""GeoParquet read by bounding box or by row number, one row group at a time.

The installed GDAL (pyogrio wheels) has no Parquet driver, so GeoParquet is read with pyarrow;
a whole file with :func:`geopandas.read_parquet` (:func:`core.delivery.read.read_layer`), a
partition of it here (:func:`read_rows`), as the partitioned pipelines read GDAL formats:

* ``bbox`` (layer CRS): exactly the rows whose geometry's envelope meets the box (boundary
  inclusive; rows without a geometry, or with an empty one, never do), in file order. GDAL's
  filter (with GEOS) keeps only those whose geometry itself meets the box, a subset differing
  near a box's corners; partition owners are chosen so that both return every row a cell owns
  (docs/scale.md, "Owners and GDAL's bbox filter");
* ``fids``: these rows, in the order asked; a feature id is the row's 0-based number in the
  file (stable: the partition code numbers source rows with it, ``fid_base`` 0).

With a GeoParquet 1.1 bbox covering (``geo`` metadata ``columns.<geometry>.covering.bbox``: a
struct column of xmin/ymin/xmax/ymax, e.g. geopandas ``to_parquet(write_covering_bbox=True)``,
Overture), a row group whose covering statistics cannot meet the box is skipped unread, and the
rows of the others are selected on the covering values before any WKB is decoded; the envelopes
of those candidates are then checked exactly (a float32 covering is only a pre-filter). Without
a covering every row group's geometry is decoded and filtered by its bounds (correct, slower:
the whole file is scanned, like a Shapefile). A row group is decoded in batches of
:data:`BATCH_ROWS` rows; pyarrow still buffers the row group's column chunks, so a read's memory
follows the row-group size (and the rows kept), never the file's. :class:`ScanStats` counts what
a read touched.

Only WKB geometry columns (what geopandas writes by default and what most deliveries use) are
read this way; a file of GeoArrow-native geometry is read whole (:func:`partitionable`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import shapely
from geopandas.array import from_shapely

from core.delivery.errors import EmptyLayerError, UnreadableError

log = logging.getLogger(__name__)

PARQUET_SUFFIXES = (".parquet", ".geoparquet")
CRS84 = "OGC:CRS84"  # a GeoParquet column without "crs" (the specification's default)
_HINT = "check that the file is complete and has a geometry column"
BATCH_ROWS = 65_536  # rows decoded at once inside a row group (pyarrow writes row groups of up to 1 Mi rows)
Bbox = tuple[float, float, float, float]


@dataclass(frozen=True)
class Covering:
    """The bbox covering of the primary geometry: its struct column and that column's fields."""

    column: str
    fields: tuple[str, str, str, str]  # the struct's xmin, ymin, xmax, ymax field names
    leaves: tuple[int, int, int, int]  # their leaf column indices (row-group statistics)
    exact: bool  # float64 values (a float32 covering is widened by its precision)


@dataclass(frozen=True)
class GeoParquetMeta:
    """What a GeoParquet file says about itself (footer only, no row read)."""

    num_rows: int
    row_groups: tuple[int, ...]  # rows per row group
    geometry: str  # the primary geometry column
    encoding: str  # "WKB", or a GeoArrow encoding ("point", "polygon", ...)
    crs: Any  # PROJJSON dict / WKT / "OGC:CRS84" when the column has no "crs"; None when null
    bbox: Bbox | None  # the column's declared bbox
    covering: Covering | None
    columns: tuple[str, ...]  # what a read returns: every column but the covering and the pandas index
    wkb_columns: tuple[str, ...]  # the WKB geometry columns among them


@dataclass
class ScanStats:
    """What one read touched (the tests and the partition reports read it)."""

    row_groups: int = 0
    row_groups_skipped: int = 0  # skipped unread: statistics (covering) or no row asked (fids)
    row_groups_read: int = 0
    rows_total: int = 0
    rows_decoded: int = 0  # WKB geometries decoded
    rows_returned: int = 0
    covering: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(d.pop("extra"))
        return d


def _fail(path: Path, exc: BaseException | str) -> UnreadableError:
    text = exc if isinstance(exc, str) else (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return UnreadableError(path, f"cannot read as GeoParquet: {text}", hint=_HINT)


def _open(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many types
        raise _fail(path, exc) from exc


def _covering(path: Path, pf: pq.ParquetFile, col_meta: dict[str, Any]) -> Covering | None:
    spec = (col_meta.get("covering") or {}).get("bbox")
    if not isinstance(spec, dict):
        return None
    try:
        parts = [spec[k] for k in ("xmin", "ymin", "xmax", "ymax")]
    except KeyError:
        log.warning("%s: malformed bbox covering %r ignored (the geometry is scanned)", path, spec)
        return None
    if any(not isinstance(p, list) or len(p) != 2 for p in parts) or len({p[0] for p in parts}) != 1:
        log.warning("%s: bbox covering %r not a struct column's fields: ignored", path, spec)
        return None
    column = str(parts[0][0])
    leaf_index = {pf.metadata.schema.column(j).path: j for j in range(pf.metadata.num_columns)}
    try:
        leaves = tuple(leaf_index[f"{column}.{p[1]}"] for p in parts)
        struct = pf.schema_arrow.field(column).type
        exact = all(pa.types.is_float64(struct.field(str(p[1])).type) for p in parts)
    except (KeyError, AttributeError, TypeError):
        log.warning("%s: bbox covering column %r not in the file: ignored", path, column)
        return None
    return Covering(column, tuple(str(p[1]) for p in parts), leaves, exact)  # type: ignore[arg-type]


def read_meta(path: Path | str, pf: pq.ParquetFile | None = None) -> GeoParquetMeta:
    """The file's GeoParquet metadata (:class:`UnreadableError` when it is not GeoParquet)."""
    path = Path(path)
    pf = pf or _open(path)
    raw = (pf.schema_arrow.metadata or {}).get(b"geo")
    if raw is None:
        raise _fail(path, "no 'geo' metadata (a plain Parquet table, not GeoParquet)")
    try:
        geo = json.loads(raw)
        primary = str(geo["primary_column"])
        col_meta = geo["columns"][primary]
    except (ValueError, KeyError, TypeError) as exc:
        raise _fail(path, f"malformed 'geo' metadata ({exc})") from exc
    names = list(pf.schema_arrow.names)
    if primary not in names:
        raise _fail(path, f"the geometry column {primary!r} is not in the file")
    covering = _covering(path, pf, col_meta)
    pandas_meta = json.loads((pf.schema_arrow.metadata or {}).get(b"pandas", b"{}") or b"{}")
    index_cols = {c for c in pandas_meta.get("index_columns", []) if isinstance(c, str)}
    skip = index_cols | ({covering.column} if covering else set())
    columns = tuple(c for c in names if c not in skip)
    wkb = tuple(c for c in columns if isinstance(geo["columns"].get(c), dict)
                and geo["columns"][c].get("encoding", "WKB").upper() == "WKB")
    crs = col_meta["crs"] if "crs" in col_meta else CRS84
    if isinstance(crs, dict):  # as geopandas does: PROJ rejects ids on datum ensemble members
        for member in (crs.get("datum_ensemble") or {}).get("members", []):
            if isinstance(member, dict):
                member.pop("id", None)
    bbox = col_meta.get("bbox")
    bbox_t = tuple(float(v) for v in bbox[:2] + bbox[-2:]) if isinstance(bbox, list) and len(bbox) in (4, 6) \
        else None
    if bbox_t is not None and not np.all(np.isfinite(bbox_t)):
        bbox_t = None
    md = pf.metadata
    return GeoParquetMeta(int(md.num_rows), tuple(md.row_group(i).num_rows for i in range(md.num_row_groups)),
                          primary, str(col_meta.get("encoding", "WKB")), crs, bbox_t,  # type: ignore[arg-type]
                          covering, columns, wkb)


def partitionable(meta: GeoParquetMeta) -> bool:
    """Whether :func:`read_rows` can read the file (its primary geometry is WKB)."""
    return meta.geometry in meta.wkb_columns


# ------------------------------------------------------------------------------------ extent
def _covering_stats(pf: pq.ParquetFile, cov: Covering, i: int) -> Bbox | None:
    """The covering's (min xmin, min ymin, max xmax, max ymax) of row group ``i``; None unknown."""
    rg = pf.metadata.row_group(i)
    out = []
    for k, j in enumerate(cov.leaves):
        st = rg.column(j).statistics
        if st is None or not st.has_min_max:
            return None
        v = float(st.min if k < 2 else st.max)
        if not np.isfinite(v):
            return None
        out.append(v)
    return out[0], out[1], out[2], out[3]


def _merge(boxes: Sequence[Sequence[float]]) -> Bbox | None:
    b = np.asarray(boxes, float).reshape(-1, 4)
    b = b[np.isfinite(b).all(axis=1)]
    if not len(b):
        return None
    return float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max())


def extent(path: Path | str, meta: GeoParquetMeta | None = None) -> tuple[Bbox | None, str]:
    """The layer's extent and where it came from: the ``geo`` metadata's bbox; else the covering's
    row-group statistics; else one streamed pass over the covering values, or the geometry."""
    path = Path(path)
    pf = _open(path)
    meta = meta or read_meta(path, pf)
    if meta.bbox is not None:
        return meta.bbox, "metadata"
    cov = meta.covering
    if cov is not None:
        stats = [_covering_stats(pf, cov, i) for i in range(len(meta.row_groups))]
        if stats and all(s is not None for s in stats):
            return _merge(stats), "covering statistics"  # type: ignore[arg-type]
    boxes = []
    try:
        for i in range(len(meta.row_groups)):
            for batch in _batches(pf, i, [cov.column if cov is not None else meta.geometry]):
                if cov is None:
                    boxes.append(shapely.total_bounds(_decode(path, batch.column(0), i)))
                    continue
                xs = _covering_values(batch.column(0), cov)
                xs = xs[:, np.isfinite(xs).all(axis=0)]
                if xs.shape[1]:
                    boxes.append([xs[0].min(), xs[1].min(), xs[2].max(), xs[3].max()])
    except UnreadableError:
        raise
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many types
        raise _fail(path, exc) from exc
    return _merge(boxes), "covering values" if cov is not None else "geometry scan"


def probe(path: Path | str, want_extent: Callable[[int], bool]) -> tuple[int, Bbox | None, Any] | None:
    """(rows, extent, declared CRS) for planning partitions, from the footer (the extent only when
    ``want_extent(rows)``: :func:`extent`); None when the file is not read by row group."""
    path = Path(path)
    meta = read_meta(path)
    if not partitionable(meta):
        log.info("%s: geometry encoded as %r, read whole", path.name, meta.encoding)
        return None
    bounds = None
    if want_extent(meta.num_rows):
        bounds, origin = extent(path, meta)
        log.info("%s: %d rows in %d row groups, extent from the %s%s", path.name, meta.num_rows,
                 len(meta.row_groups), origin, "" if meta.covering else " (no bbox covering: each partition "
                 "scans the file)")
    return meta.num_rows, bounds, meta.crs


# ------------------------------------------------------------------------------------ reading
def _decode(path: Path, column: pa.ChunkedArray | pa.Array, row_group: int) -> np.ndarray:
    try:
        return shapely.from_wkb(np.array(column, dtype=object))
    except Exception as exc:  # noqa: BLE001 - GEOS raises many types
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UnreadableError(path, f"cannot read as GeoParquet: invalid WKB in row group {row_group}: {text}",
                              hint="rewrite the file's geometry (e.g. geopandas to_parquet)") from exc


def _covering_values(column: pa.ChunkedArray, cov: Covering) -> np.ndarray:
    """(4, n) float64 xmin, ymin, xmax, ymax; NaN where the covering (or its row) is null."""
    struct = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    by_name = dict(zip([struct.type.field(k).name for k in range(struct.type.num_fields)], struct.flatten(),
                       strict=True))
    return np.vstack([by_name[f].to_numpy(zero_copy_only=False).astype(float) for f in cov.fields])


def _widen(bbox: Bbox, exact: bool) -> Bbox:
    """A float32 covering is rounded to float32 (not always outwards): query it a few ulps wider."""
    if exact:
        return bbox
    pad = [2.0 * float(np.spacing(np.float32(abs(v)))) + 1e-30 for v in bbox]
    return bbox[0] - pad[0], bbox[1] - pad[1], bbox[2] + pad[2], bbox[3] + pad[3]


def _meets(lo_x: np.ndarray, lo_y: np.ndarray, hi_x: np.ndarray, hi_y: np.ndarray, bbox: Bbox) -> np.ndarray:
    """Envelopes meeting ``bbox`` (boundary inclusive; NaN never meets)."""
    with np.errstate(invalid="ignore"):
        return (lo_x <= bbox[2]) & (hi_x >= bbox[0]) & (lo_y <= bbox[3]) & (hi_y >= bbox[1])


def _batches(pf: pq.ParquetFile, i: int, columns: list[str]) -> Iterator[pa.RecordBatch]:
    """Row group ``i`` in batches of ≤ :data:`BATCH_ROWS` rows (what a read holds at once)."""
    return pf.iter_batches(batch_size=BATCH_ROWS, row_groups=[i], columns=columns, use_threads=False)


def _covering_rows(pf: pq.ParquetFile, i: int, cov: Covering, bbox: Bbox) -> np.ndarray:
    """The rows of row group ``i`` whose covering meets ``bbox`` (no WKB decoded)."""
    found, offset = [], 0
    for batch in _batches(pf, i, [cov.column]):
        found.append(np.flatnonzero(_meets(*_covering_values(batch.column(0), cov), bbox)) + offset)
        offset += batch.num_rows
    return np.concatenate(found).astype(np.int64) if found else np.empty(0, np.int64)


def _geometry_rows(path: Path, pf: pq.ParquetFile, i: int, column: str, rows: np.ndarray | None,
                   bbox: Bbox | None) -> tuple[np.ndarray, np.ndarray]:
    """The geometries of ``rows`` of row group ``i`` (None: all), decoded batch by batch; with
    ``bbox`` only those whose envelope meets it. Returns (rows, geometries)."""
    out_rows, out_geoms, offset = [], [], 0
    for batch in _batches(pf, i, [column]):
        n = batch.num_rows
        if rows is None:
            sel, col = np.arange(n, dtype=np.int64), batch.column(0)
        else:
            lo, hi = np.searchsorted(rows, [offset, offset + n])
            sel = rows[lo:hi] - offset
            col = batch.column(0).take(pa.array(sel)) if len(sel) else None
        if col is not None:
            geoms = _decode(path, col, i)
            if bbox is not None:
                env = shapely.bounds(geoms)
                keep = _meets(env[:, 0], env[:, 1], env[:, 2], env[:, 3], bbox)
                sel, geoms = sel[keep], geoms[keep]
            out_rows.append(sel + offset)
            out_geoms.append(geoms)
        offset += n
    if not out_rows:
        return np.empty(0, np.int64), np.empty(0, dtype=object)
    return np.concatenate(out_rows).astype(np.int64), np.concatenate(out_geoms)


def _take(pf: pq.ParquetFile, i: int, columns: list[str], rows: np.ndarray) -> pa.Table:
    """``columns`` of ``rows`` (sorted) of row group ``i``, streamed batch by batch."""
    out, offset = [], 0
    for batch in _batches(pf, i, columns):
        lo, hi = np.searchsorted(rows, [offset, offset + batch.num_rows])
        if hi > lo:
            out.append(pa.Table.from_batches([batch]).take(pa.array(rows[lo:hi] - offset)))
        offset += batch.num_rows
    return pa.concat_tables(out)


def _box_meets(a: Bbox, b: Bbox) -> bool:
    return a[0] <= b[2] and a[2] >= b[0] and a[1] <= b[3] and a[3] >= b[1]


def read_rows(path: Path | str, *, bbox: Sequence[float] | None = None, fids: Sequence[int] | None = None,
              stats: ScanStats | None = None, meta: GeoParquetMeta | None = None) -> gpd.GeoDataFrame:
    """The rows of a GeoParquet file meeting ``bbox`` and/or numbered ``fids`` (module
    docstring), as :func:`geopandas.read_parquet` would give them, indexed by row number; the
    CRS is left to the caller (:attr:`GeoParquetMeta.crs`). ``stats`` is filled in."""
    path = Path(path)
    pf = _open(path)
    meta = meta or read_meta(path, pf)
    stats = stats if stats is not None else ScanStats()
    if not partitionable(meta):
        raise _fail(path, f"geometry encoded as {meta.encoding!r}: only WKB geometry is read by bounding box "
                          "or row")
    if meta.num_rows == 0:
        raise EmptyLayerError(path, "no features")
    box = None if bbox is None else tuple(float(v) for v in bbox)
    starts = np.concatenate([[0], np.cumsum(meta.row_groups)]).astype(np.int64)
    asked = None
    if fids is not None:
        asked = np.asarray(fids, np.int64).reshape(-1)
        bad = asked[(asked < 0) | (asked >= meta.num_rows)]
        if len(bad):
            raise UnreadableError(path, f"cannot read the features: no row {int(bad[0])} (the file has "
                                        f"{meta.num_rows} rows, numbered from 0)", hint=_HINT)
    cov = meta.covering if box is not None and asked is None else None
    stats.covering = meta.covering is not None
    stats.rows_total, stats.row_groups = meta.num_rows, len(meta.row_groups)
    attrs = [c for c in meta.columns if c != meta.geometry] + [c for c in meta.wkb_columns if c != meta.geometry]
    parts: list[tuple[pa.Table, np.ndarray, np.ndarray]] = []  # (rows' columns, row numbers, geometries)
    try:
        for i, n_rows in enumerate(meta.row_groups):
            start = int(starts[i])
            local = None  # the candidate rows of the row group (None: all), sorted
            if asked is not None:
                local = np.unique(asked[(asked >= start) & (asked < start + n_rows)]) - start
                if not len(local):
                    stats.row_groups_skipped += 1
                    continue
            elif cov is not None:
                rg_box = _covering_stats(pf, cov, i)
                if rg_box is not None and not _box_meets(rg_box, _widen(box, cov.exact)):
                    stats.row_groups_skipped += 1
                    continue
                local = _covering_rows(pf, i, cov, _widen(box, cov.exact))
            stats.row_groups_read += 1
            if local is not None and not len(local):
                continue
            rows, geoms = _geometry_rows(path, pf, i, meta.geometry, local, box)
            stats.rows_decoded += int(n_rows if local is None else len(local))
            if len(rows):
                parts.append((_take(pf, i, attrs, rows), rows + start, geoms))
    except UnreadableError:
        raise
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many types
        raise _fail(path, exc) from exc
    gdf = _frame(pf, meta, attrs, parts)
    if asked is not None:  # GDAL's order: the ids as asked
        gdf = gdf.loc[asked]
    stats.rows_returned = len(gdf)
    log.debug("%s: %s", path, stats.as_dict())
    return gdf


def _frame(pf: pq.ParquetFile, meta: GeoParquetMeta, attrs: list[str],
           parts: list[tuple[pa.Table, np.ndarray, np.ndarray]]) -> gpd.GeoDataFrame:
    """The kept rows as a GeoDataFrame (attribute columns converted once, as one table)."""
    others = [c for c in meta.wkb_columns if c != meta.geometry]
    if parts:
        table = pa.concat_tables([p[0] for p in parts])
        rows = np.concatenate([p[1] for p in parts])
        geoms = np.concatenate([p[2] for p in parts])
    else:
        table = pf.schema_arrow.empty_table().select(attrs)
        rows, geoms = np.empty(0, np.int64), np.empty(0, dtype=object)
    df = table.drop_columns(others).to_pandas()
    df.index = rows
    for name in meta.columns:  # geometry columns where the file has them (geopandas' order)
        if name in meta.wkb_columns:
            values = geoms if name == meta.geometry else shapely.from_wkb(np.array(table.column(name), dtype=object))
            df.insert(meta.columns.index(name), name, from_shapely(np.asarray(values, dtype=object)))
    return gpd.GeoDataFrame(df, geometry=meta.geometry)
