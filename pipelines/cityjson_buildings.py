"""CityJSON deliveries → the buildings pipeline's :class:`~pipelines.buildings.PreparedBuildings`.

The model (:mod:`core.delivery.cityjson`) already is 3D: each Building/BuildingPart keeps its
real surfaces. From them:

- footprint: the union of its GroundSurface polygons seen from above, else of every
  non-vertical surface's projection (the roofs' outline); in the working CRS chosen from the
  data (:func:`core.frames.working_crs_for`);
- base: the lowest GroundSurface vertex (else the lowest vertex); height: top − base;
- roof drop (LOD1 error of inner tiles): highest − lowest RoofSurface vertex;
- leaves at ``--lod 2`` draw the real roof/wall/ground surfaces of each object's best LOD 2.x;
  ``--lod 1.3`` (any exact CityJSON LOD) draws that LOD's real surfaces; ``--lod 1`` and inner
  tiles draw LOD1 prisms from the footprint and height;
- every CityJSON attribute becomes a metadata property (numbers as FLOAT64, else strings).

Heights are the model's own: orthometric when the reference system has a vertical datum (or
none), then the run's geoid is added; ellipsoidal for a 3D geographic CRS (``--geoid`` defaults
to ``none`` for those, :func:`default_geoid`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import shapely
from pyproj import CRS

from core.delivery.accounting import RunReport
from core.delivery.cityjson import CityBuilding, CityModel, parse_reference_system, read_cityjson
from core.errors import InputError
from core.frames import transform_xy, working_crs_for
from pipelines.building_tiles import property_name
from tiles import building_mesh as bm
from tiles.surface_mesh import SurfaceSet, newell_normal

if TYPE_CHECKING:
    from pipelines.buildings import BuildingOptions, PreparedBuildings

_BUILTIN = {"id", "name", "floors", "height", "use", "community", "roof_type", "ground_height"}
_FLOORS_KEYS = ("storeysAboveGround", "storeys_above_ground", "floors", "b3_bouwlagen")
_USE_KEYS = ("function", "usage", "use")


def default_geoid(path: Path | str) -> str | None:
    """``none`` when the file's heights are ellipsoidal (3D geographic CRS), else None (EGM96)."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as f:
            head = json.loads(f.readline()) if path.name.lower().endswith(".jsonl") else json.load(f)
        rs = (head.get("metadata") or {}).get("referenceSystem")
        return "none" if parse_reference_system(path, rs)[1] == "ellipsoidal" else None
    except (OSError, ValueError, AttributeError, InputError):
        return None  # read_cityjson reports it properly


def _footprint(bld: CityBuilding) -> shapely.Geometry | None:
    ground = bld.of_kind("GroundSurface")
    polys = [s for s in ground] or [s for s in bld.surfaces if abs(newell_normal(s.exterior)[2]) > 0.01]
    geoms = [shapely.Polygon(s.rings[0][:, :2], [r[:, :2] for r in s.rings[1:]]) for s in polys
             if len(s.rings[0]) >= 3]
    if not geoms:
        return None
    fixed = shapely.make_valid(np.array(geoms, dtype=object))
    return shapely.union_all(fixed, grid_size=None)


def _attribute_columns(buildings: list[CityBuilding]) -> dict[str, np.ndarray]:
    keys: list[str] = []
    for b in buildings:
        keys.extend(k for k in b.attributes if k not in keys)
    taken = set(_BUILTIN)
    out: dict[str, np.ndarray] = {}
    for k in keys:
        vals = [b.attributes.get(k) for b in buildings]
        present = [v for v in vals if v is not None]
        name = property_name(k, taken)
        if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
            out[name] = np.array([np.nan if v is None else float(v) for v in vals])
        else:
            out[name] = np.array([None if v is None else v if isinstance(v, str)
                                  else json.dumps(v, ensure_ascii=False) for v in vals], dtype=object)
    if any(b.parent for b in buildings):
        out[property_name("parent_id", taken)] = np.array([b.parent for b in buildings], dtype=object)
    return out


def _first(attrs: dict[str, Any], keys: tuple[str, ...]) -> Any:
    return next((attrs[k] for k in keys if attrs.get(k) not in (None, "")), None)


def prepare_cityjson(path: Path, options: BuildingOptions) -> tuple[PreparedBuildings, SurfaceSet | None, CRS]:
    """Read and check a CityJSON delivery: (prepared buildings, leaf surfaces or None, their CRS)."""
    from pipelines.buildings import PreparedBuildings

    real = options.lod >= 2 or options.lod_pick is not None  # leaves draw the source surfaces
    model: CityModel = read_cityjson(path, lod=options.lod_pick or (str(options.lod) if real else None))
    crs = model.crs or (CRS.from_user_input(options.src_crs) if options.src_crs else None)
    if crs is None:
        raise InputError(f"{path}: no metadata.referenceSystem and no --src-crs",
                         hint="pass --src-crs (e.g. EPSG:28992) or add metadata.referenceSystem")
    blds = model.buildings
    ids = np.array([b.id for b in blds] + [pid for pid, _ in model.problems], dtype=object)
    report = RunReport(layer="buildings", source=str(path), ids=ids)
    for note in model.notes:
        report.note(note)
    report.note(f"CityJSON {model.version}, {model.objects} city objects, horizontal CRS {crs.name}, "
                f"heights {model.heights}" + (f" ({model.vertical_datum})" if model.vertical_datum else ""))
    if options.dem is not None:
        report.note("--dem ignored: CityJSON surfaces carry their own heights")
    nb = len(blds)
    for k, (_, msg) in enumerate(model.problems):
        code = "empty_geometry" if "no geometry" in msg or "no surface" in msg else "wrong_geometry_type"
        report.reject(nb + k, code, msg)

    feet = np.array([_footprint(b) for b in blds], dtype=object)
    empty = np.array([f is None or f.is_empty or f.area <= 0 for f in feet], dtype=bool)
    if empty.any():
        report.reject(np.flatnonzero(empty), "zero_area", "the surfaces enclose no footprint seen from above")
    seen: dict[str, int] = {}
    for i, b in enumerate(blds):
        if b.id in seen:
            report.reject(i, "duplicate_id", f"id {b.id} already used by an earlier city object", field="id")
        seen.setdefault(b.id, i)
    alive = np.ones(nb, bool)
    alive &= ~report.rejected_mask()[:nb]
    rows = np.flatnonzero(alive)
    if len(rows) == 0:
        raise InputError(f"{path}: no Building/BuildingPart with usable geometry "
                         f"({model.objects} city objects, {len(model.problems)} rejected)")
    feet_src = feet[rows]
    b0 = shapely.total_bounds(feet_src)
    working = working_crs_for(b0, crs)
    feet_work = shapely.transform(feet_src, lambda c: np.column_stack(
        transform_xy(c[:, 0], c[:, 1], crs, working)))
    small = shapely.area(feet_work) < 0.01
    if small.any():
        report.reject(rows[small], "zero_area", [f"footprint {a:.4f} m²" for a in shapely.area(feet_work[small])])
        rows, feet_work = rows[~small], feet_work[~small]

    sel = [blds[i] for i in rows]
    base, top, drop, pitched = [], [], [], []
    for b in sel:
        ground = b.of_kind("GroundSurface")
        zs_ground = np.concatenate([r[:, 2] for s in ground for r in s.rings]) if ground else None
        zmin, zmax = b.z_range
        base.append(float(zs_ground.min()) if zs_ground is not None else zmin)
        top.append(zmax)
        roofs = b.of_kind("RoofSurface")
        if roofs:
            zr = np.concatenate([s.exterior[:, 2] for s in roofs])
            drop.append(float(zr.max() - zr.min()))
            pitched.append(any(abs(newell_normal(s.exterior)[2]) < 0.995 for s in roofs))
        else:
            drop.append(0.0)
            pitched.append(False)
    base_a, top_a = np.array(base), np.array(top)
    height = np.maximum(top_a - base_a, 0.01)
    attrs = [b.attributes for b in sel]
    floors = np.array([float(v) if isinstance(v := _first(a, _FLOORS_KEYS), (int, float)) else np.nan
                       for a in attrs])
    uses = np.array([_first(a, _USE_KEYS) for a in attrs], dtype=object)
    uses = np.array([None if u is None else str(u) for u in uses], dtype=object)
    roof = np.where(pitched, bm.ROOF_GABLE, bm.ROOF_FLAT)
    prepared = PreparedBuildings(
        rows=rows, ids=np.array([b.id for b in sel], dtype=object),
        names=np.array([_first(a, ("name", "naam")) for a in attrs], dtype=object),
        uses=uses, communities=np.array([None] * len(sel), dtype=object),
        roof_names=np.array(["pitched" if p else "flat" for p in pitched], dtype=object),
        floors=floors, height=height, roof=roof, footprints=feet_work, base=base_a, working_crs=working,
        report=report, extra=_attribute_columns(sel), roof_drop=np.array(drop),
    )
    surfaces = None
    if real:
        rings, owner, is_roof = [], [], []
        for k, b in enumerate(sel):
            for s in b.surfaces:
                rings.append(s.rings)
                owner.append(k)
                is_roof.append(s.kind == "RoofSurface")
        surfaces = SurfaceSet(rings, np.array(owner, np.int64), np.array(is_roof, bool))
        report.output["surfaces"] = len(rings)
        report.output["lods"] = sorted({b.lod for b in sel})
    return prepared, surfaces, crs
