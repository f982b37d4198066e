"""The cleaning rules of the delivery layer: one set, used by the tile pipelines and the loaders.

Rules (each reason code is in :mod:`core.delivery.reasons`; ``docs/delivery.md`` explains why):

* coordinates (:func:`check_coordinates`, while reading, in the file's CRS): a NaN/Inf vertex →
  ``invalid_coordinate``; geographic (lat, lon) order → ``swapped_axes``; outside the CRS domain
  → ``out_of_domain``; Z/M dropped → ``dropped_z`` repair. One bad vertex rejects its feature,
  never the layer.
* geometry (:func:`clean_features`, in a metric CRS): missing id → ``missing_id``; no geometry →
  ``empty_geometry``; wrong type → ``wrong_geometry_type`` (a one-part Multi* is read as its part:
  ``single_part``; a GeometryCollection's polygons are kept: ``make_valid``); invalid polygons
  (self-intersections, holes outside shells) → ``make_valid`` keeping every polygonal part;
  nothing left → ``zero_area``; area < :data:`ZERO_AREA_M2` → ``zero_area``; length <
  :data:`ZERO_LENGTH_M` → ``zero_length``; same geometry to :data:`DUPLICATE_PRECISION_M` and same
  compared attributes as an earlier feature → ``duplicate`` (earlier id kept); same id as an
  earlier different feature → ``duplicate_id``; no part within :data:`BOUNDARY_TOLERANCE_M` of the
  boundary → ``outside_boundary``.
* buildings (:func:`check_building_heights`): floors < 0 or > :data:`MAX_FLOORS` →
  ``absurd_height`` (fractional floors such as 3.5 are valid); height ≤ 0 or >
  :data:`MAX_BUILDING_HEIGHT_M` → ``absurd_height``; neither height nor floors → ``missing_height``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyogrio
import shapely
from pyproj import CRS, Transformer

from core.delivery.accounting import Accounting

#: polygons smaller than this are not features (slivers, collapsed rings); a kiosk is ~2 m²
ZERO_AREA_M2 = 0.5
#: lines shorter than this are degenerate (a repeated vertex)
ZERO_LENGTH_M = 0.01
#: geometries equal when every vertex agrees to this (far below survey precision, above float noise)
DUPLICATE_PRECISION_M = 0.001
#: a feature is outside when no part of it comes this close to the boundary polygon
BOUNDARY_TOLERANCE_M = 1.0
MAX_BUILDING_HEIGHT_M = 500.0
MAX_FLOORS = 120.0

_TYPE_NAMES = np.array(["Point", "LineString", "LinearRing", "Polygon", "MultiPoint", "MultiLineString",
                        "MultiPolygon", "GeometryCollection"])
_KINDS = {
    "point": ({"Point"}, {"MultiPoint"}),
    "line": ({"LineString", "MultiLineString"}, set()),
    "polygon": ({"Polygon", "MultiPolygon"}, set()),
}


# ------------------------------------------------------------------------------------ coordinates
def check_coordinates(geoms: np.ndarray, crs: CRS, report: Accounting) -> np.ndarray:
    """Reject features with NaN/Inf, swapped or out-of-domain vertices; drop Z/M. Returns the
    geometries with None where rejected (see module docstring)."""
    geoms = np.asarray(geoms, dtype=object).copy()
    present = np.flatnonzero(~shapely.is_missing(geoms))
    if not len(present):
        return geoms
    has_z = np.zeros(len(geoms), bool)
    has_z[present] = shapely.has_z(geoms[present])
    if has_z.any():
        geoms[has_z] = shapely.force_2d(geoms[has_z])
        report.repair(has_z, "dropped_z", "Z/M values dropped (heights come from the fields and the DEM)")
    coords, idx = shapely.get_coordinates(geoms[present], return_index=True)
    if not len(coords):
        return geoms
    rows = present[idx]

    def _first(mask: np.ndarray) -> dict[int, int]:
        """row → index of its first flagged vertex."""
        hit = np.flatnonzero(mask)
        r, first = np.unique(rows[hit], return_index=True)
        return dict(zip(r.tolist(), hit[first].tolist(), strict=True))

    def _reject(first: dict[int, int], code: str, text: str) -> None:
        if not first:
            return
        rr = np.fromiter(first, dtype=np.int64)
        msgs = [f"vertex ({coords[k, 0]!r}, {coords[k, 1]!r}) {text}" for k in first.values()]
        report.reject(rr, code, msgs, field="geometry")
        geoms[rr] = None

    finite = np.isfinite(coords).all(axis=1)
    _reject(_first(~finite), "invalid_coordinate", "is not a finite number")
    ok = finite.copy()
    if crs.is_geographic:
        # pyogrio/GeoPandas give x = longitude, y = latitude whatever the CRS's axis order
        lon, lat = coords[:, 0], coords[:, 1]
        bad_lat = ok & (np.abs(lat) > 90.0)
        swapped = bad_lat & (np.abs(lon) <= 90.0) & (np.abs(lat) <= 180.0)
        _reject(_first(swapped), "swapped_axes",
                "has a latitude beyond ±90° while its longitude would be a valid latitude: "
                "the coordinates look like (lat, lon)")
        _reject(_first(ok & ~swapped & ((np.abs(lon) > 180.0) | bad_lat)), "out_of_domain",
                "is outside longitude ±180°, latitude ±90°")
    else:
        try:
            t = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
            lon, lat = t.transform(coords[:, 0], coords[:, 1], errcheck=False)
        except Exception:  # noqa: BLE001 - PROJ cannot build the operation: leave it to the pipeline
            return geoms
        lon, lat = np.asarray(lon), np.asarray(lat)
        bad = ok & (~np.isfinite(lon) | ~np.isfinite(lat) | (np.abs(lat) > 90.0) | (np.abs(lon) > 180.0))
        _reject(_first(bad), "out_of_domain", f"does not map to the Earth in {crs.to_string()}")
    return geoms


# ------------------------------------------------------------------------------------ geometry
def geometry_keys(geoms: np.ndarray, precision: float = DUPLICATE_PRECISION_M) -> np.ndarray:
    """A string per geometry, equal for geometries equal to ``precision`` (normalised vertex order)."""
    norm = shapely.normalize(geoms)
    coords, idx = shapely.get_coordinates(norm, return_index=True)
    q = np.round(coords / precision).astype(np.int64)
    starts = np.searchsorted(idx, np.arange(len(geoms)))
    ends = np.append(starts[1:], len(idx))
    types = shapely.get_type_id(norm)
    parts = shapely.get_num_geometries(norm)
    rings = shapely.get_num_interior_rings(norm)
    raw = q.tobytes()
    item = 2 * q.itemsize
    return np.array([f"{t}.{p}.{r}:" + raw[s * item:e * item].hex()
                     for t, p, r, s, e in zip(types, parts, rings, starts, ends, strict=True)], dtype=object)


def _polygonal(geom: shapely.Geometry) -> shapely.Geometry | None:
    polys = [p for p in shapely.get_parts(geom) if p.geom_type in ("Polygon", "MultiPolygon")]
    if not polys:
        return None
    merged = shapely.union_all(polys) if len(polys) > 1 else polys[0]
    return merged if merged.geom_type in ("Polygon", "MultiPolygon") and not merged.is_empty else None


def load_boundary(path: Path | str, crs: CRS | str) -> shapely.Geometry:
    """The district boundary (union of the layer's polygons, made valid) in ``crs``."""
    from core.delivery.errors import UnreadableError

    try:
        gdf = pyogrio.read_dataframe(path)
    except Exception as exc:  # noqa: BLE001 - GDAL raises many types
        raise UnreadableError(path, f"cannot read the boundary: {exc}", hint="check --boundary") from exc
    if gdf.crs is not None:
        gdf = gdf.to_crs(crs)
    geoms = np.asarray(gdf.geometry.values, dtype=object)
    geoms = geoms[~(shapely.is_missing(geoms) | shapely.is_empty(geoms))]
    return shapely.union_all(shapely.make_valid(geoms))


def clean_features(
    report: Accounting,
    geoms: np.ndarray,
    kind: str,
    *,
    attrs: Mapping[str, np.ndarray | Sequence[object]] | None = None,
    boundary: shapely.Geometry | None = None,
) -> np.ndarray:
    """The geometry rules (module docstring) on ``geoms`` (metric CRS, one per source row, None
    where already rejected); returns the repaired geometries, None where rejected.

    ``attrs``: the attribute columns compared by the duplicate rule (besides the geometry).
    """
    ids = report.ids
    n = len(geoms)
    out = np.asarray(geoms, dtype=object).copy()
    out[report.rejected_mask()] = None
    ok_types, single_part = _KINDS[kind]

    missing_id = np.array([v is None for v in ids], dtype=bool)
    report.reject(missing_id & ~report.rejected_mask(), "missing_id", "no id", field="id")

    alive = ~report.rejected_mask()
    empty = alive & (shapely.is_missing(out) | shapely.is_empty(out))
    report.reject(empty, "empty_geometry", "the feature has no geometry")
    out[~alive | empty] = None

    tid = shapely.get_type_id(out)
    types = np.where(tid >= 0, _TYPE_NAMES[np.clip(tid, 0, 7)], "").astype(object)
    for r in np.flatnonzero(np.isin(types, list(single_part))):
        parts = shapely.get_parts(out[r])
        if len(parts) == 1:
            out[r] = parts[0]
            types[r] = out[r].geom_type
            report.repair(r, "single_part", f"{single_part} with one part read as {types[r]}")
    if kind == "polygon":
        for r in np.flatnonzero(types == "GeometryCollection"):
            poly = _polygonal(out[r])
            if poly is not None:
                out[r] = poly
                types[r] = poly.geom_type
                report.repair(r, "make_valid", "GeometryCollection: its polygons kept")
    bad_type = (types != "") & ~np.isin(types, list(ok_types))
    if bad_type.any():
        rows = np.flatnonzero(bad_type)
        report.reject(rows, "wrong_geometry_type",
                      [f"geometry is a {types[r]}, this layer needs {kind}s" for r in rows])
        out[rows] = None

    if kind == "polygon":
        present = np.flatnonzero(~shapely.is_missing(out))
        invalid = present[~shapely.is_valid(out[present])]
        for r in invalid:
            reason = shapely.is_valid_reason(out[r])
            fixed = _polygonal(shapely.make_valid(out[r]))
            if fixed is not None and fixed.area >= ZERO_AREA_M2:
                out[r] = fixed
                report.repair(r, "make_valid", f"invalid polygon ({reason}) repaired with make_valid: "
                                               f"{shapely.get_num_geometries(fixed)} part(s), {fixed.area:.1f} m²")
            else:
                # make_valid keeps all the area there is: nothing left means the ring has collapsed
                report.reject(r, "zero_area", f"invalid polygon ({reason}) encloses no area")
                out[r] = None
        present = np.flatnonzero(~shapely.is_missing(out))
        area = shapely.area(out[present])
        small = present[area < ZERO_AREA_M2]
        report.reject(small, "zero_area", [f"footprint area {a:.3f} m² < {ZERO_AREA_M2} m²"
                                           for a in area[area < ZERO_AREA_M2]])
        out[small] = None
    elif kind == "line":
        present = np.flatnonzero(~shapely.is_missing(out))
        length = shapely.length(out[present])
        short = present[length < ZERO_LENGTH_M]
        report.reject(short, "zero_length", f"line length < {ZERO_LENGTH_M} m")
        out[short] = None

    # duplicates: same geometry (1 mm) and same compared attributes; then repeated ids
    rows = np.flatnonzero(~shapely.is_missing(out))
    if len(rows):
        key = pd.Series(geometry_keys(out[rows]), dtype=object)
        for values in (attrs or {}).values():
            col = pd.Series(np.asarray(values, dtype=object)[rows])
            key = key + "|" + col.map(lambda v: "" if v is None or (isinstance(v, float) and v != v)
                                      else str(v)).to_numpy()
        codes, _ = pd.factorize(key)
        _, first_of_code = np.unique(codes, return_index=True)
        first = first_of_code[codes]
        dup = first != np.arange(len(rows))
        if dup.any():
            kept = [str(ids[rows[first[i]]]) for i in np.flatnonzero(dup)]
            report.reject(rows[dup], "duplicate", [f"same geometry and attributes as {k}; {k} kept" for k in kept],
                          related_id=kept)
            out[rows[dup]] = None
        rows = rows[~dup]
        again = pd.Series(ids[rows].astype(str)).duplicated(keep="first").to_numpy()
        if again.any():
            report.reject(rows[again], "duplicate_id",
                          [f"id {i} already used by an earlier feature with different geometry/attributes"
                           for i in ids[rows[again]]], field="id", related_id=[str(i) for i in ids[rows[again]]])
            out[rows[again]] = None

    if boundary is not None:
        rows = np.flatnonzero(~shapely.is_missing(out))
        if len(rows):
            zone = shapely.buffer(boundary, BOUNDARY_TOLERANCE_M)
            shapely.prepare(zone)
            outside = rows[~shapely.intersects(zone, out[rows])]
            if len(outside):
                c = shapely.get_coordinates(shapely.point_on_surface(out[outside]))
                d = shapely.distance(boundary, out[outside])
                report.reject(outside, "outside_boundary",
                              [f"at x={x:.1f} y={y:.1f}, {dist:.0f} m outside the district boundary"
                               for (x, y), dist in zip(c, d, strict=True)])
                out[outside] = None
    assert len(out) == n
    return out


# ------------------------------------------------------------------------------------ buildings
def check_building_heights(
    report: Accounting,
    floors: np.ndarray,
    height: np.ndarray,
    alive: np.ndarray,
    *,
    max_height: float = MAX_BUILDING_HEIGHT_M,
    max_floors: float = MAX_FLOORS,
    missing: str = "reject",
) -> np.ndarray:
    """Reject absurd floors/heights and (``missing='reject'``) buildings with neither; returns
    the rows still alive. Fractional floors (3.5) are valid."""
    floors = np.asarray(floors, dtype=float)
    height = np.asarray(height, dtype=float)
    alive = np.asarray(alive, bool) & ~report.rejected_mask()
    has_f = np.isfinite(floors)
    bad_f = alive & ((has_f & ((floors < 0) | (floors > max_floors))) | np.isinf(floors))
    if bad_f.any():
        report.reject(bad_f, "absurd_height", [f"floors {f:g} outside 0..{max_floors:g}" for f in floors[bad_f]],
                      field="floors", value=[f"{f:g}" for f in floors[bad_f]])
        alive &= ~bad_f
    has_h = ~np.isnan(height)
    bad_h = alive & has_h & (~np.isfinite(height) | (height <= 0) | (height > max_height))
    if bad_h.any():
        report.reject(bad_h, "absurd_height",
                      [f"height {h:g} m outside (0, {max_height:g}] m" for h in height[bad_h]],
                      field="height", value=[f"{h:g}" for h in height[bad_h]])
        alive &= ~bad_h
    if missing == "reject":
        neither = alive & ~has_h & ~(has_f & (floors > 0))
        if neither.any():
            report.reject(neither, "missing_height", "no height and no floors", field="height")
            alive &= ~neither
    return alive
