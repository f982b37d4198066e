"""Inputs the draped layers (roads, vegetation, furniture) resolve the same way from their options.

The DEM is flat at 0 m orthometric when none is given. The boundary is the given polygon file, or
``boundary.gpkg`` beside SRC, or none. The field mapping is a mapping object or its YAML path.
"""

from __future__ import annotations

from pathlib import Path

import shapely

from core.delivery.checks import find_boundary, load_boundary
from core.delivery.mapping import FieldMapping, load_mapping
from pipelines.drape import DemGrid


def resolve_inputs(src: Path, dem: Path | None, boundary: Path | None,
                   mapping: FieldMapping | Path | None) -> tuple[DemGrid, shapely.Geometry | None, FieldMapping | None]:
    """The DEM grid, the boundary geometry (or None) and the field mapping (or None) for ``src``."""
    grid = DemGrid.read(dem) if dem else DemGrid.flat()
    area = load_boundary(find_boundary(src, boundary))
    fields = load_mapping(mapping) if isinstance(mapping, (str, Path)) else mapping
    return grid, area, fields
