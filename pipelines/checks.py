"""Feature checks shared by the roads, vegetation and furniture pipelines.

Each check rejects (or repairs) rows in the layer's :class:`~pipelines.report.RunReport` with a
message naming the file, the feature id and the field; valid features around them are kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyogrio
import shapely
from pyproj import CRS

from core.frames import active_working_crs
from pipelines.report import RunReport
from pipelines.sources import SourceLayer

BOUNDARY_TOLERANCE_M = 10.0

_KINDS = {
    "point": ({"Point"}, {"MultiPoint"}),
    "line": ({"LineString", "MultiLineString"}, set()),
    "polygon": ({"Polygon", "MultiPolygon"}, set()),
}


def load_boundary(path: Path | str | None) -> shapely.Geometry | None:
    """The district boundary (union of the layer's polygons) in the run's working CRS, or None."""
    if path is None:
        return None
    gdf = pyogrio.read_dataframe(path)
    working = active_working_crs()
    if gdf.crs is not None and not CRS.from_user_input(gdf.crs).equals(working, ignore_axis_order=True):
        gdf = gdf.to_crs(working)
    return shapely.union_all(gdf.geometry.values)


def find_boundary(src: Path, given: Path | None) -> Path | None:
    """``given``, else ``boundary.gpkg`` beside the source file (the delivery layout), else None."""
    if given is not None:
        return given
    candidate = Path(src).parent / "boundary.gpkg"
    return candidate if candidate.exists() else None


def survey_geometries(src: SourceLayer) -> np.ndarray:
    """The layer's geometries in the run's working CRS (:func:`core.frames.active_working_crs`:
    the delivery's own CRS when true to scale there, else a TM centred on the data)."""
    gdf = src.gdf
    working = active_working_crs()
    if not src.crs.equals(working, ignore_axis_order=True):
        gdf = gdf.to_crs(working)
    return np.asarray(gdf.geometry.values, dtype=object)


def check_features(
    src: SourceLayer,
    kind: str,
    *,
    compare: Sequence[str],
    boundary: shapely.Geometry | None = None,
    min_size: float = 0.01,
) -> np.ndarray:
    """Common checks; returns the (repaired) working-CRS geometries, None where rejected.

    missing_id, empty_geometry, wrong_geometry_type, invalid polygons make_valid'ed (nothing left:
    zero_area), zero_length / zero_area, duplicate (same geometry to 1 cm and same
    ``compare`` attributes as an earlier row), duplicate_id, outside_boundary.
    """
    report: RunReport = src.report
    geoms = survey_geometries(src)
    ok_types, single_part = _KINDS[kind]
    ids = report.ids

    missing_id = np.array([v is None for v in ids])
    if missing_id.any():
        report.reject(missing_id, "missing_id", "no id", field="id")

    empty = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    report.reject(empty, "empty_geometry", "the feature has no geometry")
    out = geoms.copy()
    out[empty] = None

    type_names = np.array(["Point", "LineString", "LinearRing", "Polygon", "MultiPoint", "MultiLineString",
                           "MultiPolygon", "GeometryCollection"])
    tid = shapely.get_type_id(out)
    types = np.where(tid >= 0, type_names[np.clip(tid, 0, 7)], "").astype(object)
    for r in np.flatnonzero(np.isin(types, list(single_part))):
        parts = shapely.get_parts(out[r])
        if len(parts) == 1:
            out[r] = parts[0]
            types[r] = out[r].geom_type
            report.repair(r, "single_part", f"{single_part} with one part read as {types[r]}")
    bad_type = (types != "") & ~np.isin(types, list(ok_types))
    if bad_type.any():
        rows = np.flatnonzero(bad_type)
        report.reject(rows, "wrong_geometry_type",
                      [f"geometry {types[r]} is not a {kind}" for r in rows])
        out[rows] = None

    if kind == "polygon":
        for r in np.flatnonzero(~shapely.is_missing(out) & ~shapely.is_valid(out)):
            fixed = shapely.make_valid(out[r])
            polys = [p for p in shapely.get_parts(fixed) if p.geom_type in ("Polygon", "MultiPolygon")]
            if polys and shapely.union_all(polys).area > min_size:
                out[r] = shapely.union_all(polys)
                report.repair(r, "make_valid", "invalid polygon (self-intersection) repaired with make_valid")
            else:
                # make_valid keeps all the area there is: nothing left means the ring has collapsed
                report.reject(r, "zero_area", f"invalid polygon ({shapely.is_valid_reason(out[r])}) encloses no area")
                out[r] = None
        alive = np.flatnonzero(~shapely.is_missing(out))
        small = alive[shapely.area(out[alive]) <= min_size]
        report.reject(small, "zero_area", "polygon area is (near) zero")
        out[small] = None
    elif kind == "line":
        alive = np.flatnonzero(~shapely.is_missing(out))
        short = alive[shapely.length(out[alive]) <= min_size]
        report.reject(short, "zero_length", "line length is (near) zero")
        out[short] = None

    # duplicates: identical geometry (1 cm) and identical compared attributes
    alive = np.flatnonzero(~shapely.is_missing(out) & ~missing_id)
    if len(alive):
        wkb = shapely.to_wkb(shapely.set_precision(out[alive], 0.01), hex=True)
        attrs = [[None if isinstance(v, float) and v != v else v  # NaN ≠ NaN would hide duplicates
                  for v in src.gdf[c].to_numpy(dtype=object)[alive].tolist()] for c in compare]
        keys = list(zip(wkb.tolist(), *attrs, strict=True))
        first_of_key: dict[tuple, int] = {}
        first_of_id: dict[str, int] = {}
        for r, k in zip(alive.tolist(), keys, strict=True):
            fid = str(ids[r])
            if k in first_of_key:
                f = first_of_key[k]
                report.reject(r, "duplicate", f"same geometry and attributes as feature {ids[f]}",
                              related_id=str(ids[f]))
                out[r] = None
                continue
            first_of_key[k] = r
            if fid in first_of_id:
                report.reject(r, "duplicate_id",
                              f"id already used by a different feature (row {first_of_id[fid]})",
                              field="id", related_id=fid)
                out[r] = None
                continue
            first_of_id[fid] = r

    if boundary is not None:
        alive = np.flatnonzero(~shapely.is_missing(out))
        zone = shapely.buffer(boundary, BOUNDARY_TOLERANCE_M)
        shapely.prepare(zone)
        outside = alive[~shapely.intersects(zone, out[alive])]
        if len(outside):
            c = shapely.get_coordinates(shapely.centroid(out[outside]))
            d = shapely.distance(boundary, out[outside])
            report.reject(outside, "outside_boundary",
                          [f"at x={x:.1f} y={y:.1f}, {dist:.0f} m outside the district boundary"
                           for (x, y), dist in zip(c, d, strict=True)])
            out[outside] = None
    return out


def numeric_column(src: SourceLayer, name: str) -> np.ndarray:
    """A float column of the canonical layer (NaN = missing)."""
    return np.asarray(src.gdf[name].to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)


def text_column(src: SourceLayer, name: str) -> np.ndarray:
    return np.array([None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
                     for v in src.gdf[name].tolist()], dtype=object)
