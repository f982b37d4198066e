"""The delivery layer: reading survey deliveries, one set of cleaning rules, one reason table,
one accounting class, under both the tile pipelines (``pipelines``) and the loaders (``gis``).

Modules (one job each):

* :mod:`~core.delivery.read` — :func:`read_layer` (vector files and CSV of points → canonical
  columns), :func:`read_table` (CSV/Parquet tables), layer selection, CRS handling;
* :mod:`~core.delivery.encoding` — declared vs detected text encodings;
* :mod:`~core.delivery.mapping` — the YAML field mapping (``data/mappings``);
* :mod:`~core.delivery.values` — lenient numbers ("12,5", "12 m", 3.5 floors);
* :mod:`~core.delivery.rules` — the cleaning rules (coordinates, geometry, duplicates, boundary,
  building heights) and their thresholds;
* :mod:`~core.delivery.checks` — the rules applied to a read layer (tile pipelines);
* :mod:`~core.delivery.reasons` — the one reason-code table;
* :mod:`~core.delivery.accounting` — :class:`Accounting`, per-feature rejections and repairs,
  checked against what was really written;
* :mod:`~core.delivery.errors` — :class:`SourceError` and subclasses (all ``InputError``).

``docs/delivery.md`` describes the rules and codes.
"""

from core.delivery.accounting import Accounting, AccountingError, Issue
from core.delivery.errors import (
    CrsConflictError,
    CrsMissingError,
    CrsUnknownError,
    EmptyLayerError,
    EncodingError,
    FieldMissingError,
    LayerError,
    MappingError,
    NonSpatialError,
    NothingAcceptedError,
    SourceError,
    UnreadableError,
)
from core.delivery.mapping import FieldMapping, load_mapping
from core.delivery.read import DELIVERY_CRS, FieldSpec, SourceLayer, read_layer, read_table
from core.delivery.reasons import REASONS, Reason

__all__ = [
    "DELIVERY_CRS", "REASONS", "Accounting", "AccountingError", "CrsConflictError", "CrsMissingError",
    "CrsUnknownError", "EmptyLayerError", "EncodingError", "FieldMapping", "FieldMissingError", "FieldSpec",
    "Issue", "LayerError", "MappingError", "NonSpatialError", "NothingAcceptedError", "Reason", "SourceError",
    "SourceLayer", "UnreadableError", "load_mapping", "read_layer", "read_table",
]
