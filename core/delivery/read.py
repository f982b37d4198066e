"""Read survey vector layers into canonical GeoDataFrames, with clear errors and a run report.

Any format pyogrio reads (Shapefile with ``.cpg`` or ``--encoding``, GeoPackage, GeoJSON,
FlatGeobuf, ...) plus CSV with coordinate columns (``x``/``y``, ``lon``/``lat``, ...) or a WKT
column. Any CRS pyproj knows; ``src_crs`` is only for files that declare none.

A YAML field mapping renames source fields to canonical names and translates values::

    encoding: GBK            # used when the file does not declare one (.cpg)
    crs: EPSG:4548           # optional, for files without a declared CRS
    layer: buildings         # optional
    fields: {id: BH, name: MC, floors: CS, height: JZGD, use: YT, roof_type: WDLX, community: SQ}
    values:
      use: {住宅: residential, 商业: commercial}
      roof_type: {平顶: flat, 双坡: gable, 四坡: hip}

Numbers are parsed leniently ("12.5 m", "12,5", " 12 ", "12米"); "" and blanks are missing;
anything else ("abc") rejects the feature with ``unparsable_value``. Lenient parses that changed
the text are reported as ``parsed_value`` repairs.

Errors are :class:`SourceError` subclasses whose message names the file, the field and the fix.
"""

from __future__ import annotations

import logging
import math
import re
import struct
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
import yaml
from pyproj import CRS
from pyproj.exceptions import CRSError

from pipelines.report import RunReport

log = logging.getLogger(__name__)

DELIVERY_CRS = "EPSG:4548"


# ------------------------------------------------------------------------------------ errors
class SourceError(Exception):
    """A source file cannot be read as asked; the message says which file and how to fix it."""

    def __init__(self, path: Path | str, message: str) -> None:
        self.path = Path(path)
        super().__init__(f"{self.path}: {message}")


class CrsMissingError(SourceError):
    """The file declares no CRS and none was given."""


class CrsUnknownError(SourceError):
    """The declared or given CRS is not one PROJ understands."""


class CrsConflictError(SourceError):
    """``--src-crs`` was given for a file that declares a different CRS."""


class FieldMissingError(SourceError):
    """A mapped or required field is not in the file."""

    def __init__(self, path: Path | str, canonical: str, source_name: str, available: Sequence[str],
                 hint: str = "") -> None:
        self.canonical, self.source_name, self.available = canonical, source_name, list(available)
        mapped = f" (mapped from {canonical!r})" if canonical != source_name else ""
        super().__init__(
            path,
            f"field {source_name!r}{mapped} not found; available fields: {', '.join(available) or '(none)'}"
            + (f"; {hint}" if hint else ""),
        )


class EmptyLayerError(SourceError):
    """The layer has no features."""


class NonSpatialError(SourceError):
    """The file/layer has no geometry (an attribute table, or a CSV without coordinates)."""


class EncodingError(SourceError):
    """Text fields cannot be decoded with the declared encoding (or decode to mojibake)."""


class LayerError(SourceError):
    """The file has several layers and none was chosen, or the chosen one does not exist."""


class MappingError(SourceError):
    """The YAML field mapping is malformed."""


# ------------------------------------------------------------------------------------ mapping
@dataclass(frozen=True)
class FieldMapping:
    """canonical name → source field, value translations per canonical field, defaults."""

    fields: dict[str, str] = field(default_factory=dict)
    values: dict[str, dict[str, Any]] = field(default_factory=dict)
    encoding: str | None = None
    crs: str | None = None
    layer: str | None = None
    path: Path | None = None


def load_mapping(path: Path | str) -> FieldMapping:
    """Read a YAML mapping (see module docstring); ``values`` may be keyed by canonical or source name."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise MappingError(path, f"cannot read mapping: {exc}") from exc
    if not isinstance(doc, dict):
        raise MappingError(path, "mapping must be a YAML mapping with 'fields:' (canonical: source)")
    fields = doc.get("fields") or {}
    if not isinstance(fields, dict) or not all(isinstance(v, str) for v in fields.values()):
        raise MappingError(path, "'fields:' must map canonical names to source field names")
    source_to_canonical = {v.lower(): k for k, v in fields.items()}
    values: dict[str, dict[str, Any]] = {}
    for key, table in (doc.get("values") or {}).items():
        if not isinstance(table, dict):
            raise MappingError(path, f"'values: {key}:' must map source values to canonical values")
        canonical = key if key in fields else source_to_canonical.get(str(key).lower(), key)
        values[canonical] = {str(k).strip(): v for k, v in table.items()}
    return FieldMapping(
        fields={str(k): str(v) for k, v in fields.items()}, values=values,
        encoding=doc.get("encoding"), crs=None if doc.get("crs") is None else str(doc["crs"]),
        layer=doc.get("layer"), path=path,
    )


# ------------------------------------------------------------------------------------ values
_NUMBER = re.compile(r"^[+-]?(\d+([.,]\d*)?|[.,]\d+)$")
_UNIT = re.compile(r"\s*(m|M|meters?|metres?|米|层|F|f|floors?)$")

ParseStatus = Literal["ok", "empty", "parsed", "unparsable"]


def parse_number(value: Any) -> tuple[float | None, ParseStatus]:
    """Lenient number parse: (value, status). "12,5"→12.5 parsed; ""→None empty; "abc"→unparsable."""
    if value is None:
        return None, "empty"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return float(value), "ok"
    if isinstance(value, (float, np.floating)):
        return (None, "empty") if math.isnan(value) else (float(value), "ok")
    text = str(value).strip().replace("\u3000", "")
    if not text:
        return None, "empty"
    try:
        return float(text), "ok"
    except ValueError:
        pass
    stripped = _UNIT.sub("", text).strip()
    if _NUMBER.match(stripped):
        number = float(stripped.replace(",", "."))
        return (number, "parsed") if math.isfinite(number) else (None, "unparsable")
    return None, "unparsable"


def parse_numbers(values: pd.Series | Sequence[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised :func:`parse_number`: (float64 with NaN for missing, parsed mask, unparsable mask)."""
    series = pd.Series(values, copy=False)
    n = len(series)
    if n == 0:
        return np.zeros(0), np.zeros(0, bool), np.zeros(0, bool)
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        return series.to_numpy(dtype=np.float64, na_value=np.nan), np.zeros(n, bool), np.zeros(n, bool)
    out = np.full(n, np.nan)
    parsed = np.zeros(n, bool)
    unparsable = np.zeros(n, bool)
    fast = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    ok = np.isfinite(fast)
    out[ok] = fast[ok]
    for i in np.flatnonzero(~ok):
        v, status = parse_number(series.iat[i])
        if v is not None:
            out[i] = v
        parsed[i] = status == "parsed"
        unparsable[i] = status == "unparsable"
    return out, parsed, unparsable


# ------------------------------------------------------------------------------------ specs
@dataclass(frozen=True)
class FieldSpec:
    """A canonical field a pipeline wants: kind str/float/int; required fields must exist."""

    name: str
    kind: Literal["str", "float", "int"] = "str"
    required: bool = False


@dataclass
class SourceLayer:
    """A layer read into canonical columns (+ ``geometry``) in the source CRS; row i = report row i."""

    gdf: gpd.GeoDataFrame
    crs: CRS
    path: Path
    layer: str | None
    encoding: str | None
    report: RunReport
    field_sources: dict[str, str | None]


# ------------------------------------------------------------------------------------ encoding
def _dbf_text_samples(dbf: Path, max_records: int = 5000) -> list[bytes]:
    """Raw bytes of non-ASCII character fields of a dBASE file (for encoding checks)."""
    with open(dbf, "rb") as fh:
        head = fh.read(32)
        if len(head) < 32:
            return []
        n_records, header_len, record_len = struct.unpack_from("<IHH", head, 4)
        fields: list[tuple[int, int]] = []  # (offset in record, length) of C fields
        offset = 1
        while True:
            desc = fh.read(32)
            if not desc or desc[0] == 0x0D or len(desc) < 32:
                break
            ftype, flen = chr(desc[11]), desc[16]
            if ftype == "C":
                fields.append((offset, flen))
            offset += flen
        if not fields:
            return []
        fh.seek(header_len)
        data = fh.read(record_len * min(n_records, max_records))
    samples = []
    for r in range(len(data) // record_len):
        rec = data[r * record_len:(r + 1) * record_len]
        for off, length in fields:
            raw = rec[off:off + length].rstrip(b" \x00")
            if any(b > 0x7F for b in raw):
                samples.append(raw)
    return samples


def _decodes(samples: Sequence[bytes], encoding: str) -> bool:
    try:
        for s in samples:
            s.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return False
    return True


def _is_utf8_name(encoding: str | None) -> bool:
    return (encoding or "").lower().replace("-", "").replace("_", "") in ("utf8", "utf8sig")


def check_text_encoding(path: Path, samples: Sequence[bytes], declared: str | None, origin: str) -> None:
    """Raise :class:`EncodingError` when the raw text bytes do not match the declared encoding.

    ``origin`` says where ``declared`` came from (".cpg", "--encoding", "mapping", "default").
    Non-UTF-8 declarations whose bytes are nevertheless valid multi-byte UTF-8 are mojibake.
    """
    if not samples:
        return
    candidates = [e for e in ("UTF-8", "GBK", "GB18030", "Big5") if _decodes(samples, e)]
    suggestion = f"--encoding {candidates[0]}" if candidates else "--encoding GBK (or the right one)"
    example = samples[0][:40]
    if declared is None:
        raise EncodingError(path, f"text fields are not ASCII (e.g. {example!r}) and no encoding is declared "
                                  f"(no .cpg); they decode as {', '.join(candidates) or 'nothing known'}: "
                                  f"pass {suggestion}")
    if not _decodes(samples, declared):
        raise EncodingError(path, f"text fields are not valid {declared} (from {origin}), e.g. {example!r}; "
                                  f"they decode as {', '.join(candidates) or 'nothing known'}: "
                                  f"pass {suggestion}")
    if not _is_utf8_name(declared) and "UTF-8" in candidates:
        mojibake = example.decode(declared, "replace")
        raise EncodingError(path, f"{origin} says {declared} but the text bytes are UTF-8 (reading them as "
                                  f"{declared} gives mojibake such as {mojibake!r}): "
                                  "pass --encoding UTF-8 or fix the .cpg")


def _mojibake_check_strings(path: Path, series_list: Sequence[pd.Series]) -> None:
    """Decoded strings that still look like Latin-1 mojibake of CJK bytes (e.g. '½â·Å')."""
    for s in series_list:
        values = s.dropna().astype(str).head(2000)
        if values.empty:
            continue
        suspect = values[values.str.contains("[\x80-\xff]", regex=True)
                         & ~values.str.contains("[\u2e80-\uffff]", regex=True)]
        for v in suspect.head(50):
            try:
                raw = v.encode("latin-1")
            except UnicodeEncodeError:
                continue
            cands = [e for e in ("UTF-8", "GBK") if _decodes([raw], e)]
            if cands:
                raise EncodingError(path, f"text {v!r} looks like {cands[0]} read as Latin-1: "
                                          f"pass --encoding {cands[0]}")


# ------------------------------------------------------------------------------------ reading
_CSV_XY_PAIRS = (("x", "y"), ("lon", "lat"), ("lng", "lat"), ("longitude", "latitude"),
                 ("easting", "northing"))
_CSV_WKT = ("wkt", "geometry", "geom", "the_geom")


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
            raise CrsUnknownError(path, f"{origin} {src_crs!r} is not a CRS PROJ knows ({exc}); "
                                        "use e.g. EPSG:4548") from exc
    if declared is None:
        if has_prj and given is None:
            raise CrsUnknownError(path, "the .prj file cannot be read as a CRS; fix it or delete it and "
                                        "pass --src-crs (e.g. EPSG:4548)")
        if given is None:
            raise CrsMissingError(path, "the file declares no CRS; pass --src-crs (the delivery CRS is "
                                        f"{DELIVERY_CRS}) or add a .prj")
        return given, f"CRS {given.to_string()} from {origin} (the file declares none)"
    try:
        crs = CRS.from_user_input(declared)
    except CRSError as exc:
        raise CrsUnknownError(path, f"declared CRS cannot be used by PROJ ({exc})") from exc
    if given is not None and not given.equals(crs, ignore_axis_order=True):
        raise CrsConflictError(path, f"the file declares {crs.to_string()} but --src-crs says "
                                     f"{given.to_string()}; --src-crs is only for files without a CRS "
                                     "(reproject the file or fix its .prj)")
    return crs, ""


def _pick_layer(path: Path, layer: str | None) -> str | None:
    try:
        layers = [str(row[0]) for row in pyogrio.list_layers(path)]
    except Exception as exc:  # noqa: BLE001 - GDAL raises many types
        raise SourceError(path, f"cannot open as a vector file: {exc}") from exc
    if layer is not None:
        if layer not in layers:
            raise LayerError(path, f"no layer {layer!r}; layers: {', '.join(layers)}")
        return layer
    if len(layers) <= 1:
        return layers[0] if layers else None
    if path.stem in layers:
        return path.stem
    raise LayerError(path, f"{len(layers)} layers ({', '.join(layers)}): choose one with --layer")


def _read_csv(path: Path, encoding: str | None, src_crs_hint: str | None) -> tuple[gpd.GeoDataFrame, Any]:
    raw = path.read_bytes()
    enc = encoding or "utf-8-sig"
    samples = [line for line in raw.splitlines()[:5000] if any(b > 0x7F for b in line)]
    check_text_encoding(path, samples, enc, "--encoding" if encoding else "default (UTF-8)")
    try:
        df = pd.read_csv(path, encoding=enc, dtype=str, keep_default_na=False, na_values=[""])
    except UnicodeDecodeError as exc:  # pragma: no cover - caught by check_text_encoding above
        raise EncodingError(path, f"not {enc}: {exc}; pass --encoding GBK") from exc
    if df.empty:
        raise EmptyLayerError(path, "the CSV has no rows")
    lower = {c.lower().strip(): c for c in df.columns}
    declared = None
    prj = path.with_suffix(".prj")
    if prj.exists():
        declared = prj.read_text(errors="replace")
    for xname, yname in _CSV_XY_PAIRS:
        if xname in lower and yname in lower:
            xs, _, bad_x = parse_numbers(df[lower[xname]])
            ys, _, bad_y = parse_numbers(df[lower[yname]])
            geom = shapely.points(xs, ys)
            geom[~(np.isfinite(xs) & np.isfinite(ys))] = None
            if declared is None and src_crs_hint is None and xname in ("lon", "lng", "longitude"):
                declared = "EPSG:4326"
            gdf = gpd.GeoDataFrame(df.drop(columns=[lower[xname], lower[yname]]), geometry=geom)
            return gdf, declared
    for name in _CSV_WKT:
        if name in lower:
            geom = shapely.from_wkt(df[lower[name]].to_numpy(), on_invalid="ignore")
            return gpd.GeoDataFrame(df.drop(columns=[lower[name]]), geometry=geom), declared
    raise NonSpatialError(path, "CSV has no coordinate columns (x/y, lon/lat, longitude/latitude) and no "
                                f"WKT column; columns: {', '.join(df.columns)}")


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
) -> SourceLayer:
    """Read a layer into canonical columns; rows with unparsable numbers are rejected in the report.

    ``fields`` (e.g. from CLI options) override ``mapping.fields``; a field mapped explicitly
    (either way) must exist. Unmapped canonical fields are looked up by their own name
    (case-insensitive); missing required ones raise :class:`FieldMissingError`.
    """
    path = Path(path)
    if not path.exists():
        raise SourceError(path, "file not found")
    mapping = mapping or FieldMapping()
    is_csv = path.suffix.lower() in (".csv", ".txt", ".tsv")
    encoding_used: str | None = None
    crs_note = ""
    if is_csv:
        gdf, declared = _read_csv(path, encoding or mapping.encoding, src_crs or mapping.crs)
        crs, crs_note = _resolve_crs(path, declared, src_crs, False, mapping.crs)
        layer_used = None
        encoding_used = encoding or mapping.encoding or "UTF-8"
    else:
        layer_used = _pick_layer(path, layer or mapping.layer)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            info = pyogrio.read_info(path, layer=layer_used)
        if info.get("geometry_type") in (None, "None"):
            raise NonSpatialError(path, f"layer {layer_used!r} has no geometry column (an attribute table); "
                                        "give the spatial layer or a file with geometry")
        if not info.get("features"):
            raise EmptyLayerError(path, f"layer {layer_used!r} has no features")
        read_kwargs: dict[str, Any] = {}
        if info.get("driver") == "ESRI Shapefile":
            cpg = next((p for p in (path.with_suffix(".cpg"), path.with_suffix(".CPG")) if p.exists()), None)
            cpg_enc = cpg.read_text(errors="replace").strip() or None if cpg else None
            declared_enc, origin = (encoding, "--encoding") if encoding else (
                (cpg_enc, ".cpg") if cpg_enc else (mapping.encoding, "the mapping's encoding"))
            samples = _dbf_text_samples(path.with_suffix(".dbf"))
            check_text_encoding(path, samples, declared_enc, origin)
            if declared_enc:
                read_kwargs["encoding"] = declared_enc
            encoding_used = declared_enc or "ASCII"
        elif encoding:
            read_kwargs["encoding"] = encoding
        has_prj = path.with_suffix(".prj").exists() or path.with_suffix(".PRJ").exists()
        crs, crs_note = _resolve_crs(path, info.get("crs"), src_crs, has_prj, mapping.crs)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                gdf = pyogrio.read_dataframe(path, layer=layer_used, **read_kwargs)
        except UnicodeDecodeError as exc:
            raise EncodingError(path, f"text is not {read_kwargs.get('encoding', 'UTF-8')}: {exc}; "
                                      "pass --encoding GBK (or the file's encoding)") from exc
        if not read_kwargs.get("encoding") and not _is_utf8_name(encoding_used):
            _mojibake_check_strings(path, [gdf[c] for c in gdf.columns if gdf[c].dtype == object
                                           and c != gdf.geometry.name])
    if len(gdf) == 0:
        raise EmptyLayerError(path, "no features")
    if bool(gdf.geometry.isna().all()):
        raise NonSpatialError(path, f"none of the {len(gdf)} features has a geometry")
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
                origin = f"mapping {mapping.path}" if spec.name in mapping.fields and not (fields or {}).get(
                    spec.name) else "the command line"
                raise FieldMissingError(path, spec.name, src, available, f"fix {origin}")
            field_sources[spec.name] = lower[src.lower()]
        elif spec.name.lower() in lower:
            field_sources[spec.name] = lower[spec.name.lower()]
        elif spec.required:
            raise FieldMissingError(path, spec.name, spec.name, available,
                                    f"map it with --{spec.name.replace('_', '-')}-field or a --mapping file")
        else:
            field_sources[spec.name] = None

    ids_col = field_sources.get(id_field)
    ids = (clean_strings(gdf[ids_col]).to_numpy(dtype=object) if ids_col
           else np.array([None] * len(gdf), dtype=object))
    report = RunReport(layer=layer_name, source=str(path), ids=ids)
    if crs_note:
        report.note(crs_note)

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
    out = gpd.GeoDataFrame(columns, geometry=gdf.geometry.values, crs=crs)

    if expected_crs is not None and not crs.equals(CRS.from_user_input(expected_crs), ignore_axis_order=True):
        name = crs.to_string()
        report.note(f"layer CRS {name} differs from the delivery CRS {expected_crs}: "
                    "every feature reprojected")
        report.repair(np.arange(len(out)), "reprojected", f"reprojected from {name}")
    return SourceLayer(out, crs, path, layer_used, encoding_used, report, field_sources)


def clean_strings(series: pd.Series) -> pd.Series:
    """Stripped strings, None for missing/blank; integral floats (ids read as numbers) without '.0'."""
    if pd.api.types.is_float_dtype(series):
        return series.map(_clean_str).astype(object)
    if pd.api.types.is_integer_dtype(series):
        return series.astype(str).astype(object)
    s = series.astype(object)
    missing = s.isna().to_numpy()
    text = s.where(~missing, "").astype(str).str.strip()
    out = text.astype(object).to_numpy()
    out[missing | (text.to_numpy() == "")] = None
    return pd.Series(out, index=series.index, dtype=object)


def _clean_str(v: Any) -> str | None:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        v = int(v)
    s = str(v).strip()
    return s or None
