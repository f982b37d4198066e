"""Layer-level entry points of the rules for the tile pipelines: check a :class:`SourceLayer`.

The pipelines of roads, trees and furniture call :func:`check_features` on the layer they read;
buildings call :func:`core.delivery.rules.clean_features` and
:func:`~core.delivery.rules.check_building_heights` in their own working frame. The loaders call
the same rules (``gis/loaders``), so the tiles and PostGIS accept the same features.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import shapely
from pyproj import CRS

from core.delivery.read import SourceLayer
from core.delivery.rules import clean_features
from core.delivery.rules import load_boundary as _load_boundary
from core.frames import active_working_crs


def load_boundary(path: Path | str | None, crs: CRS | str | None = None) -> shapely.Geometry | None:
    """The district boundary (union of the layer's polygons) in ``crs`` (default: the run's working
    CRS, :func:`core.frames.active_working_crs`), or None."""
    return None if path is None else _load_boundary(path, crs if crs is not None else active_working_crs())


def find_boundary(src: Path, given: Path | None) -> Path | None:
    """``given``, else ``boundary.gpkg`` beside the source file (the delivery layout), else None."""
    if given is not None:
        return given
    candidate = Path(src).parent / "boundary.gpkg"
    return candidate if candidate.exists() else None


def survey_geometries(src: SourceLayer, crs: CRS | str | None = None) -> np.ndarray:
    """The layer's geometries in ``crs`` (default: the run's working CRS chosen from the data by
    :mod:`pipelines.run_frame`, :func:`core.frames.active_working_crs`; EPSG:4548 outside a run),
    reprojected when the file is in another CRS."""
    crs = crs if crs is not None else active_working_crs()
    gdf = src.gdf
    if not src.crs.equals(CRS.from_user_input(crs), ignore_axis_order=True):
        gdf = gdf.to_crs(crs)
    return np.asarray(gdf.geometry.values, dtype=object)


def check_features(
    src: SourceLayer,
    kind: str,
    *,
    compare: Sequence[str],
    boundary: shapely.Geometry | None = None,
) -> np.ndarray:
    """The geometry rules of :mod:`core.delivery.rules` on the layer in the working CRS; returns the
    (repaired) geometries, None where rejected. ``compare``: attributes of the duplicate rule."""
    geoms = survey_geometries(src)
    attrs = {c: src.gdf[c].to_numpy(dtype=object) for c in compare}
    return clean_features(src.report, geoms, kind, attrs=attrs, boundary=boundary)


def numeric_column(src: SourceLayer, name: str) -> np.ndarray:
    """A float column of the canonical layer (NaN = missing)."""
    return np.asarray(src.gdf[name].to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)


def text_column(src: SourceLayer, name: str) -> np.ndarray:
    return np.array([None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
                     for v in src.gdf[name].tolist()], dtype=object)
