"""Read a delivered layer into canonical columns, with clear errors and an :class:`Accounting`.

Any format pyogrio reads (Shapefile, GeoPackage, GeoJSON, FlatGeobuf, ...), GeoParquet (pyarrow;
by bounding box or row: :mod:`core.delivery.geoparquet`) plus CSV of points (``x``/``y``,
``lon``/``lat``, ... columns, or a WKT column). Any CRS PROJ knows; the
delivery CRS is only a default for files that declare none (``src_crs``, the mapping's ``crs:``).
Encodings: :mod:`core.delivery.encoding`; field mapping: :mod:`core.delivery.mapping`; lenient
numbers: :mod:`core.delivery.values`; per-vertex coordinate rules (NaN/Inf, outside the CRS
domain, swapped lat/lon) and Z/M dropping: :mod:`core.delivery.rules`.

Errors are :class:`~core.delivery.errors.SourceError` subclasses (``InputError``) whose message
names the file, the field and whose hint names the real option to use.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pyogrio.raw
import shapely
from pyproj import CRS
from pyproj.exceptions import CRSError

from core.delivery import encoding as enc
from core.delivery import geoparquet as gp
from core.delivery.accounting import Accounting
from core.delivery.errors import (
    CrsConflictError,
    CrsMissingError,
    CrsUnknownError,
    EmptyLayerError,
    EncodingError,
    FieldMissingError,
    LayerError,
    NonSpatialError,
    SourceError,
    UnreadableError,
)
from core.delivery.mapping import FieldMapping, apply_to_table
from core.delivery.rules import check_coordinates
from core.delivery.values import clean_strings, parse_numbers

log = logging.getLogger(__name__)

DELIVERY_CRS = "EPSG:4548"


@dataclass(frozen=True)
class FieldSpec:
    """A canonical field a pipeline wants: kind str/float/int; required fields must exist."""

    name: str
    kind: Literal["str", "float", "int"] = "str"
    required: bool = False


@dataclass
class SourceLayer:
    """A layer read into canonical columns (+ ``geometry``) in the source CRS; row i = report row i.

    Features rejected while reading (unparsable numbers, bad coordinates) are still rows here,
    recorded in ``report``; their geometry is None when the coordinates were the problem.
    """

    gdf: gpd.GeoDataFrame
    crs: CRS
    path: Path
    layer: str | None
    encoding: str | None
    report: Accounting
    field_sources: dict[str, str | None]
    fids: np.ndarray | None = None  # the file's feature ids of the rows (bbox reads, ``with_fids``)
    scan: dict[str, Any] | None = None  # what a GeoParquet bbox/fids read touched (geoparquet.ScanStats)


_CSV_XY_PAIRS = (("x", "y"), ("lon", "lat"), ("lng", "lat"), ("longitude", "latitude"),
                 ("easting", "northing"))
_CSV_WKT = ("wkt", "geometry", "geom", "the_geom")
CSV_SUFFIXES = (".csv", ".txt", ".tsv")


def _resolve_crs(path: Path, declared: Any, src_crs: str | None, has_prj: bool,
                 fallback: str | None = None, fallback_origin: str = "the mapping") -> tuple[CRS, str]:
    """The layer CRS: the declared one; ``src_crs`` (must agree when both); else ``fallback``."""
    given: CRS | None = None
    origin = "--src-crs"
    if src_crs is None and declared is None and fallback is not None:
        src_crs, origin = fallback, fallback_origin
    if src_crs is not None:
        try:
            given = CRS.from_user_input(src_crs)
        except CRSError as exc:
            raise CrsUnknownError(path, f"{origin} {src_crs!r} is not a CRS PROJ knows ({exc})",
                                  hint="use e.g. --src-crs EPSG:4548") from exc
    if declared is None:
        if has_prj and given is None:
            raise CrsUnknownError(path, "the .prj file cannot be read as a CRS",
                                  hint="fix the .prj, or delete it and pass --src-crs (e.g. EPSG:4548)")
        if given is None:
            raise CrsMissingError(path, "the file declares no CRS",
                                  hint=f"pass --src-crs (the delivery CRS is {DELIVERY_CRS}) or add a .prj")
        return given, f"CRS {given.to_string()} from {origin} (the file declares none)"
    try:
        crs = CRS.from_user_input(declared)
    except CRSError as exc:
        raise CrsUnknownError(path, f"declared CRS cannot be used by PROJ ({exc})",
                              hint="fix the file's CRS, or remove it and pass --src-crs") from exc
    if given is not None and not given.equals(crs, ignore_axis_order=True):
        raise CrsConflictError(path, f"the file declares {crs.to_string()} but --src-crs says {given.to_string()}",
                               hint="--src-crs is only for files without a CRS: reproject the file or "
                                    "fix its .prj")
    return crs, ""


def _gdal(path: Path, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call pyogrio; any GDAL failure becomes an :class:`UnreadableError` naming the file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn(*args, **kwargs)
    except SourceError:
        raise
    except UnicodeDecodeError as exc:
        raise EncodingError(path, f"text cannot be decoded: {exc}",
                            hint="pass --encoding with the file's encoding (e.g. GBK)") from exc
    except Exception as exc:  # noqa: BLE001 - GDAL raises many types
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnreadableError(path, f"cannot {what}: {text}",
                              hint="check that the file is complete and in a vector format "
                                   "(GeoPackage, Shapefile with .shx/.dbf, GeoJSON, FlatGeobuf, GeoParquet, CSV)"
                              ) from exc


def _check_shapefile_parts(path: Path) -> None:
    for ext in (".shx", ".dbf"):
        if not any(path.with_suffix(e).exists() for e in (ext, ext.upper())):
            what = "index" if ext == ".shx" else "attribute table (ids, heights, names)"
            raise UnreadableError(path, f"the Shapefile has no {path.with_suffix(ext).name} ({what})",
                                  hint=f"deliver {path.with_suffix(ext).name} beside {path.name}, "
                                       "or the layer as a GeoPackage")
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head != b"\x00\x00\x27\x0a":
        raise UnreadableError(path, "not a Shapefile (the file does not start with the Shapefile magic number)",
                              hint="deliver the real .shp, or the layer as a GeoPackage")


def _read_features(path: Path, layer: str | None, read_kwargs: dict[str, Any], crs: CRS) -> gpd.GeoDataFrame:
    """The layer's features; a geometry GEOS refuses (an unclosed ring, e.g. around a NaN vertex)
    must not kill the layer: then every WKB is decoded on its own, broken rings closed ("fix"), and
    the coordinate rules reject the feature."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pyogrio.read_dataframe(path, layer=layer, **read_kwargs)
    except shapely.errors.GEOSException:
        pass
    except Exception as exc:  # noqa: BLE001 - GDAL raises many types
        if "IllegalArgumentException" not in str(exc):
            return _gdal(path, "read the features", pyogrio.read_dataframe, path, layer=layer, **read_kwargs)
    raw_kwargs = {k: v for k, v in read_kwargs.items() if k != "fid_as_index"}
    with_fids = bool(read_kwargs.get("fid_as_index"))
    _meta, fids, wkb, field_data = _gdal(path, "read the features", pyogrio.raw.read, path, layer=layer,
                                        return_fids=with_fids, **raw_kwargs)
    geoms = shapely.from_wkb(wkb, on_invalid="fix")
    columns = {name: values for name, values in zip(_meta["fields"], field_data, strict=True)}
    index = pd.Index(np.asarray(fids, dtype=np.int64)) if with_fids and fids is not None else None
    return gpd.GeoDataFrame(columns, geometry=geoms, crs=crs, index=index)


def pick_layer(path: Path, layer: str | None) -> str | None:
    layers = [str(row[0]) for row in _gdal(path, "open it as a vector file", pyogrio.list_layers, path)]
    if layer is not None:
        if layer not in layers:
            raise LayerError(path, f"no layer {layer!r}; layers: {', '.join(layers)}",
                             hint="pass --layer with one of these")
        return layer
    if len(layers) <= 1:
        return layers[0] if layers else None
    if path.stem in layers:
        return path.stem
    raise LayerError(path, f"{len(layers)} layers ({', '.join(layers)}) and none chosen",
                     hint="choose one with --layer")


def read_csv_text(path: Path, encoding: str | None, origin: str) -> tuple[pd.DataFrame, str | None]:
    """A CSV as text columns (blank = missing), decoded with ``encoding`` or the detected one."""
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw, bom = raw[3:], True
    else:
        bom = False
    used, note = enc.resolve_encoding(path, enc.csv_samples(raw), encoding, origin)
    used = used or ("UTF-8" if bom else None)
    import io

    try:
        df = pd.read_csv(io.BytesIO(raw), encoding=used or "ascii", dtype=str, keep_default_na=False,
                         na_values=[""], skipinitialspace=True)
    except pd.errors.EmptyDataError as exc:
        raise EmptyLayerError(path, "the CSV is empty (no header)") from exc
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise UnreadableError(path, f"cannot parse the CSV: {str(exc).strip().splitlines()[0]}",
                              hint="check quoting and the number of columns per line") from exc
    df.columns = [str(c).strip() for c in df.columns]
    return df, note or None


def _read_csv_points(path: Path, encoding: str | None, origin: str,
                     src_crs_hint: str | None) -> tuple[gpd.GeoDataFrame, Any, str | None]:
    df, note = read_csv_text(path, encoding, origin)
    if df.empty:
        raise EmptyLayerError(path, "the CSV has a header but no rows")
    lower = {c.lower(): c for c in df.columns}
    prj = path.with_suffix(".prj")
    declared = prj.read_text(errors="replace") if prj.exists() else None
    for xname, yname in _CSV_XY_PAIRS:
        if xname in lower and yname in lower:
            xs, _, _ = parse_numbers(df[lower[xname]])
            ys, _, _ = parse_numbers(df[lower[yname]])
            geom = shapely.points(np.where(np.isfinite(xs), xs, 0.0), np.where(np.isfinite(ys), ys, 0.0))
            geom[np.isnan(xs) | np.isnan(ys)] = None
            inf = np.isinf(xs) | np.isinf(ys)
            if inf.any():  # keep Inf so the coordinate rule reports it
                geom[inf] = shapely.points(xs[inf], ys[inf])
            if declared is None and src_crs_hint is None and xname in ("lon", "lng", "longitude"):
                declared = "EPSG:4326"
            gdf = gpd.GeoDataFrame(df.drop(columns=[lower[xname], lower[yname]]), geometry=geom)
            return gdf, declared, note
    for name in _CSV_WKT:
        if name in lower:
            geom = shapely.from_wkt(df[lower[name]].to_numpy(), on_invalid="ignore")
            return gpd.GeoDataFrame(df.drop(columns=[lower[name]]), geometry=geom), declared, note
    raise NonSpatialError(path, "CSV has no coordinate columns (x/y, lon/lat, longitude/latitude) and no "
                                f"WKT column; columns: {', '.join(df.columns)}",
                          hint="name the coordinate columns x,y or lon,lat")


def _field_hint(name: str, field_options: Mapping[str, str], mapping: FieldMapping) -> str:
    option = field_options.get(name)
    where = f"{option} or " if option else ""
    return f"map it with {where}a --mapping file (fields: {{{name}: <delivered field>}})"


def read_layer(
    path: Path | str,
    specs: Sequence[FieldSpec],
    *,
    layer_name: str = "features",
    fields: Mapping[str, str | None] | None = None,
    mapping: FieldMapping | None = None,
    encoding: str | None = None,
    src_crs: str | None = None,
    layer: str | None = None,
    expected_crs: str | None = DELIVERY_CRS,
    id_field: str = "id",
    field_options: Mapping[str, str] | None = None,
    report: Accounting | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    fids: Sequence[int] | None = None,
    with_fids: bool = False,
) -> SourceLayer:
    """Read a layer into canonical columns; features with unparsable numbers or bad coordinates
    are rejected in the report (their rows stay).

    ``fields`` (e.g. from CLI options) override ``mapping.fields``; a field mapped explicitly
    (either way) must exist. Unmapped canonical fields are looked up by their own name
    (case-insensitive); missing required ones raise :class:`FieldMissingError`, whose hint names
    ``field_options[name]`` (the command's real option, e.g. ``--id-field``) when there is one.
    ``report``: an accounting to fill (loaders pass theirs); a new one otherwise.
    ``bbox`` (layer CRS; not CSV): only the features whose envelope meets it, through the file's
    spatial index (GeoPackage, FlatGeobuf; GeoParquet row groups and bbox covering; Shapefile and
    GeoParquet without a covering scan); an empty result is then no error. ``fids``: only these
    features (by the file's feature id; GeoParquet: the 0-based row). ``with_fids``: keep the
    file's feature ids in ``SourceLayer.fids`` (partitioned pipelines); ``SourceLayer.scan``: what a
    GeoParquet bbox/fids read touched.
    """
    path = Path(path)
    if not path.exists():
        raise SourceError(path, "file not found")
    if path.is_dir():
        raise SourceError(path, "is a folder, not a file", hint="give the delivered file inside it")
    if path.stat().st_size == 0:
        raise UnreadableError(path, "the file is empty (0 bytes)", hint="deliver the file again")
    mapping = mapping or FieldMapping()
    notes: list[str] = []
    encoding_used: str | None = None
    want_fids = False
    scan: dict[str, Any] | None = None
    if path.suffix.lower() in CSV_SUFFIXES:
        origin = "--encoding" if encoding else "the mapping's encoding"
        gdf, declared, note = _read_csv_points(path, encoding or mapping.encoding, origin, src_crs or mapping.crs)
        notes += [note] if note else []
        crs, crs_note = _resolve_crs(path, declared, src_crs, False, mapping.crs)
        layer_used = None
        encoding_used = encoding or mapping.encoding or "UTF-8"
    elif path.suffix.lower() in gp.PARQUET_SUFFIXES:
        # GeoParquet (UTF-8 by specification) through pyarrow: GDAL's driver is optional
        layer_used, encoding_used = None, "UTF-8"
        if encoding and not enc.is_utf8_name(encoding):
            notes.append(f"--encoding {encoding} ignored: GeoParquet files are UTF-8 by specification")
        want_fids = with_fids or bbox is not None or fids is not None
        if bbox is None and fids is None:
            try:
                gdf = gpd.read_parquet(path)
            except Exception as exc:  # noqa: BLE001 - pyarrow/geopandas raise many types
                raise UnreadableError(path, f"cannot read as GeoParquet: {str(exc).strip().splitlines()[0]}",
                                      hint="check that the file is complete and has a geometry column") from exc
            declared = gdf.crs
            gdf.index = pd.RangeIndex(len(gdf))  # feature id = row number (a stored pandas index is not one)
        else:  # a partition: row group by row group (core.delivery.geoparquet)
            meta = gp.read_meta(path)
            stats = gp.ScanStats()
            gdf = gp.read_rows(path, bbox=bbox, fids=fids, stats=stats, meta=meta)
            declared, scan = meta.crs, stats.as_dict()
        crs, crs_note = _resolve_crs(path, declared, src_crs, False, mapping.crs)
        gdf = gdf.set_geometry(gdf.geometry.name)
    else:
        if path.suffix.lower() == ".shp":
            _check_shapefile_parts(path)
        layer_used = pick_layer(path, layer or mapping.layer)
        info = _gdal(path, "read the layer", pyogrio.read_info, path, layer=layer_used)
        if info.get("geometry_type") in (None, "None"):
            raise NonSpatialError(path, f"layer {layer_used!r} has no geometry column (an attribute table)",
                                  hint="give the spatial layer with --layer, or a file with geometry")
        if not info.get("features"):
            raise EmptyLayerError(path, f"layer {layer_used!r} has no features")
        read_kwargs: dict[str, Any] = {}
        if bbox is not None:
            read_kwargs["bbox"] = tuple(float(v) for v in bbox)
        if fids is not None:
            read_kwargs["fids"] = np.asarray(fids, dtype=np.int64)
        want_fids = with_fids or bbox is not None or fids is not None
        if want_fids:
            read_kwargs["fid_as_index"] = True
        driver = info.get("driver")
        if driver == "ESRI Shapefile":
            dbf = next(p for p in (path.with_suffix(".dbf"), path.with_suffix(".DBF")) if p.exists())
            cpg = next((p for p in (path.with_suffix(".cpg"), path.with_suffix(".CPG")) if p.exists()), None)
            cpg_enc = (cpg.read_text(errors="replace").strip() or None) if cpg else None
            ldid = enc.dbf_language_driver(dbf)
            declared_enc, origin = next(
                ((e, o) for e, o in ((encoding, "--encoding"), (cpg_enc, ".cpg"),
                                     (mapping.encoding, "the mapping's encoding"),
                                     (ldid, "the .dbf language driver")) if e),
                (None, ""))
            used, note = enc.resolve_encoding(path, enc.dbf_text_samples(dbf), declared_enc, origin)
            notes += [note] if note else []
            read_kwargs["encoding"] = used or "UTF-8"  # ASCII reads the same in UTF-8
            encoding_used = used or "ASCII"
        elif driver in enc.UTF8_BY_SPEC or driver is None:
            encoding_used = "UTF-8"
            if encoding and not enc.is_utf8_name(encoding):
                notes.append(f"--encoding {encoding} ignored: {driver} files are UTF-8 by specification")
        elif encoding:
            read_kwargs["encoding"] = encoding
            encoding_used = encoding
        has_prj = path.with_suffix(".prj").exists() or path.with_suffix(".PRJ").exists()
        crs, crs_note = _resolve_crs(path, info.get("crs"), src_crs, has_prj, mapping.crs)
        gdf = _read_features(path, layer_used, read_kwargs, crs)
    fid_values = np.asarray(gdf.index, dtype=np.int64) if want_fids else None
    if len(gdf) == 0 and bbox is None:
        raise EmptyLayerError(path, "no features")
    if len(gdf) and fids is None and bool(gdf.geometry.isna().all()):  # some rows by id: theirs may be empty
        raise NonSpatialError(path, f"none of the {len(gdf)} features has a geometry",
                              hint="check the geometry column (or the x/y columns of a CSV)")
    gdf = gdf.reset_index(drop=True)

    available = [c for c in gdf.columns if c != gdf.geometry.name]
    lower = {c.lower(): c for c in available}
    explicit = dict(mapping.fields)
    explicit.update({k: v for k, v in (fields or {}).items() if v})
    field_sources: dict[str, str | None] = {}
    for spec in specs:
        src = explicit.get(spec.name)
        if src is not None:
            if src.lower() not in lower:
                from_cli = bool((fields or {}).get(spec.name))
                origin = "the command line" if from_cli else f"the mapping {mapping.path}"
                raise FieldMissingError(path, spec.name, src, available, f"fix {origin}")
            field_sources[spec.name] = lower[src.lower()]
        elif spec.name.lower() in lower:
            field_sources[spec.name] = lower[spec.name.lower()]
        elif spec.required:
            raise FieldMissingError(path, spec.name, spec.name, available,
                                    _field_hint(spec.name, field_options or {}, mapping))
        else:
            field_sources[spec.name] = None

    ids_col = field_sources.get(id_field)
    ids = (clean_strings(gdf[ids_col]).to_numpy(dtype=object) if ids_col
           else np.array([None] * len(gdf), dtype=object))
    if report is None:
        report = Accounting(layer=layer_name, source=str(path), ids=ids)
    else:
        report.ids = ids
    for note in notes + ([crs_note] if crs_note else []):
        report.note(note)

    columns: dict[str, Any] = {}
    for spec in specs:
        src = field_sources[spec.name]
        if src is None:
            columns[spec.name] = pd.Series([None] * len(gdf), dtype=object) if spec.kind == "str" \
                else pd.Series(np.full(len(gdf), np.nan))
            continue
        series = gdf[src]
        if spec.kind == "str":
            values = clean_strings(series)
            table = mapping.values.get(spec.name)
            if table:
                values = values.map(lambda v, t=table: t.get(v, v) if v is not None else None)
            columns[spec.name] = values.astype(object)
            continue
        nums, parsed, unparsable = parse_numbers(series)
        if spec.kind == "int":
            frac = np.isfinite(nums) & (np.abs(nums - np.round(nums)) > 1e-9)
            unparsable |= frac
            nums[frac] = np.nan
        raw = series.astype(str).to_numpy()
        if unparsable.any():
            rows = np.flatnonzero(unparsable)
            report.reject(rows, "unparsable_value",
                          [f"{spec.kind} value {raw[r]!r} cannot be parsed" for r in rows],
                          field=spec.name, value=[raw[r] for r in rows])
        if parsed.any():
            rows = np.flatnonzero(parsed)
            report.repair(rows, "parsed_value", [f"{raw[r]!r} read as {nums[r]:g}" for r in rows],
                          field=spec.name, value=[raw[r] for r in rows])
        columns[spec.name] = nums
    geoms = check_coordinates(np.asarray(gdf.geometry.values, dtype=object), crs, report)
    out = gpd.GeoDataFrame(columns, geometry=geoms, crs=crs)

    if expected_crs is not None and not crs.equals(CRS.from_user_input(expected_crs), ignore_axis_order=True):
        name = crs.to_string()
        report.note(f"layer CRS {name} differs from the delivery CRS {expected_crs}: "
                    "every feature reprojected")
        report.repair(np.arange(len(out)), "reprojected", f"reprojected from {name}")
    return SourceLayer(out, crs, path, layer_used, encoding_used, report, field_sources, fid_values, scan)


def read_table(path: Path | str, mapping: FieldMapping | None, report: Accounting, *,
               encoding: str | None = None, **kwargs: Any) -> pd.DataFrame:
    """A CSV (text columns, blank = missing; encoding declared or detected) or Parquet table,
    renamed/recoded by the mapping; index = 0-based data row; ``report.source_rows`` set."""
    path = Path(path)
    mapping = mapping or FieldMapping()
    if not path.exists():
        raise SourceError(path, "file not found")
    if path.stat().st_size == 0:
        raise UnreadableError(path, "the file is empty (0 bytes)", hint="deliver the file again")
    if path.suffix.lower() == ".parquet":
        try:
            df = pd.read_parquet(path, **kwargs)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises many types
            raise UnreadableError(path, f"cannot read as Parquet: {str(exc).splitlines()[0]}",
                                  hint="check that the file is complete") from exc
    else:
        origin = "--encoding" if encoding else "the mapping's encoding"
        df, note = read_csv_text(path, encoding or mapping.encoding, origin)
        if note:
            report.note(note)
        if kwargs.get("nrows") is not None:
            df = df.head(int(kwargs["nrows"]))
    df = df.reset_index(drop=True)
    report.source_rows = len(df)
    return apply_to_table(mapping, df)
