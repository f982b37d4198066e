"""The frames of one pipeline run: the geoid (``--geoid``) and the working CRS chosen from the data.

:func:`in_run_frame` wraps a ``build_<layer>`` entry point: it resolves the geoid model and the
metric working CRS of the delivery (:func:`core.frames.working_crs_for`: the delivery's own CRS
when it is true to scale where the data lies, else a transverse Mercator centred on the data)
and makes both active for everything the run does (DEM sampling, draping, ENU frames), so no
intermediate CRS of another place is ever used.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import shapely
from pyproj import CRS

from core.frames import DEFAULT_DELIVERY_CRS, using_geoid, using_working_crs, working_crs_for

F = TypeVar("F", bound=Callable[..., Any])

_SRC_NAMES = ("src", "src_path", "trees_path", "green_path", "water_path")


def _reader() -> tuple[Any, Any]:
    """(read_layer, FieldMapping) of the delivery layer (core.delivery; pipelines.sources before it)."""
    try:
        from core.delivery import read as delivery
    except ImportError:  # pragma: no cover - the layer before its move to core.delivery
        from pipelines import sources as delivery  # type: ignore[no-redef]
    mapping_cls = getattr(delivery, "FieldMapping", None)
    if mapping_cls is None:
        from core.delivery.mapping import FieldMapping as mapping_cls  # type: ignore[no-redef]
    return delivery.read_layer, mapping_cls


def _mapping_value(mapping: Any, key: str) -> Any:
    if mapping is None:
        return None
    if isinstance(mapping, (str, Path)):
        import yaml

        try:
            data = yaml.safe_load(Path(mapping).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            return None  # the pipeline's own reading reports it
        return data.get(key) if isinstance(data, dict) else None
    return getattr(mapping, key, None)


def working_crs_of_file(path: Path | str, src_crs: str | None = None, mapping: Any = None,
                        layer: str | None = None) -> CRS:
    """The working CRS of a delivery file (its CRS resolved as the pipeline resolves it)."""
    read_layer, field_mapping = _reader()
    fm = field_mapping(crs=_mapping_value(mapping, "crs"), layer=_mapping_value(mapping, "layer"),
                       encoding=_mapping_value(mapping, "encoding"))
    src = read_layer(path, (), layer_name="frame", mapping=fm, src_crs=src_crs, layer=layer,
                     expected_crs=None)
    geoms = np.asarray(src.gdf.geometry.values, dtype=object)
    ok = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    if ok.any():
        coords = shapely.get_coordinates(geoms[ok])
        coords = coords[np.isfinite(coords).all(axis=1)]
    else:
        coords = np.zeros((0, 2))
    if not len(coords):
        return CRS.from_user_input(src.crs or DEFAULT_DELIVERY_CRS)
    # the median point's neighbourhood: one wild coordinate does not move the frame away
    lo, hi = np.percentile(coords, 2, axis=0), np.percentile(coords, 98, axis=0)
    return working_crs_for((lo[0], lo[1], hi[0], hi[1]), src.crs)


def _option(bound: inspect.BoundArguments, name: str) -> Any:
    if name in bound.arguments:
        return bound.arguments[name]
    options = bound.arguments.get("options")
    return getattr(options, name, None) if options is not None else None


def in_run_frame(fn: F) -> F:
    """Run ``fn`` with its ``geoid`` (egm96 when not given) and its delivery's working CRS active."""
    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        bound = sig.bind_partial(*args, **kwargs)
        src = next((bound.arguments[n] for n in _SRC_NAMES if bound.arguments.get(n) is not None), None)
        with using_geoid(_option(bound, "geoid")):
            if src is None:
                return fn(*args, **kwargs)
            working = working_crs_of_file(src, _option(bound, "src_crs"), _option(bound, "mapping"),
                                          _option(bound, "layer"))
            with using_working_crs(working):
                return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
