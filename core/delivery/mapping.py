"""The YAML field mapping of a delivery (``data/mappings/*.yaml``), one format for tiles and loads.

A mapping renames source fields to canonical names and translates values::

    encoding: GBK            # used when the format declares none (Shapefile without .cpg, CSV)
    crs: EPSG:4548           # optional, for files without a declared CRS
    layer: buildings         # optional
    fields: {id: BH, name: MC, floors: CS, height: JZGD, use: YT, roof_type: WDLX, community: SQ}
    values:
      use: {住宅: residential, 商业: commercial}
      roof_type: {平顶: flat, 双坡: gable, 四坡: hip}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from core.delivery.errors import MappingError


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




def apply_to_table(mapping: FieldMapping, df: pd.DataFrame) -> pd.DataFrame:
    """Rename delivered columns of a table (CSV/Parquet) to canonical names and translate values."""
    rename = {src: dst for dst, src in mapping.fields.items() if src in df.columns and src != dst}
    df = df.rename(columns=rename)
    for col, table in mapping.values.items():
        if col in df.columns:
            df[col] = df[col].map(lambda v, t=table: t.get(v.strip(), v) if isinstance(v, str) else v)
    return df
