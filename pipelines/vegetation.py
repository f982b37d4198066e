"""Trees (instanced billboards) + green spaces and water (draped surfaces) → 3D Tiles.

Output ``OUT/tileset.json`` has no content of its own; it references two external tilesets:

- ``OUT/trees/tileset.json``: ``trees.gpkg`` points as ``EXT_mesh_gpu_instancing`` crossed
  billboards (broadleaf or conifer texture chosen from the species), scaled to each tree's
  crown diameter and height, turned by a yaw derived from the id (so rows do not look cloned);
- ``OUT/areas/tileset.json``: ``green.gpkg`` polygons draped on the DEM (+0.25 m) and
  ``water.gpkg`` polygons flat at ``water_level`` (orthometric → ellipsoidal with the geoid,
  +0.05 m). Overlaps are resolved before meshing so no two surfaces share ground: water wins
  over green, and smaller green polygons are carved out of larger ones.

Tree checks: common ones (:mod:`core.delivery.checks`), ``absurd_height`` (≤ 0 or > 60 m),
``outside_dem``; repairs: no height → 8 m, no/absurd crown diameter → 0.6 × height (1.5–15 m).
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from core.delivery.accounting import RunReport
from core.delivery.checks import check_features, numeric_column, text_column
from core.delivery.mapping import FieldMapping
from core.delivery.read import FieldSpec, SourceLayer, read_layer
from core.frames import active_geoid, ecef_to_lonlat_ellipsoidal
from pipelines.drape import TERRAIN_CLEARANCE_M, DemGrid, color_u8, sample_heights
from pipelines.inputs import resolve_inputs
from pipelines.instanced import InstancedBuild, InstanceSet, build_instanced_tileset, summary_dict
from pipelines.layer_partitions import LayerWorker
from pipelines.progress import Progress, for_stage
from pipelines.progress import report as say
from pipelines.publish import Staging
from pipelines.run_frame import in_run_frame
from pipelines.surfaces import SurfaceBuild, SurfaceSet, build_surface_tileset, subtract_earlier
from tiles.gltf import PropertyColumn
from tiles.models import tree_kind, tree_template
from tiles.tileset import OrientedBox

log = logging.getLogger(__name__)

MAX_TREE_HEIGHT_M = 60.0
DEFAULT_TREE_HEIGHT_M = 8.0
GREEN_LIFT_M = TERRAIN_CLEARANCE_M + 0.05  # above the terrain mesh (not only the DEM), + anti z-fighting
WATER_LIFT_M = 0.05

TREE_SPECS = (
    FieldSpec("id", "str", required=True),
    FieldSpec("species", "str"),
    FieldSpec("height", "float"),
    FieldSpec("crown_diameter", "float"),
    FieldSpec("setting", "str"),
)
GREEN_SPECS = (FieldSpec("id", "str", required=True), FieldSpec("kind", "str"), FieldSpec("name", "str"))
WATER_SPECS = (FieldSpec("id", "str", required=True), FieldSpec("name", "str"), FieldSpec("kind", "str"),
               FieldSpec("water_level", "float"))

GREEN_COLORS = {"park": "#6fa85a", "green_space": "#7cb865", "courtyard": "#8fbf72", "separator": "#5e9e4c"}
WATER_COLORS = {"lake": "#3d7fb8", "river": "#4a8cc2"}


@dataclass
class VegetationResult:
    reports: list[RunReport]
    trees: InstancedBuild | None = None
    areas: SurfaceBuild | None = None
    instances: InstanceSet | None = None
    areas_set: SurfaceSet | None = None
    summary: dict[str, Any] = field(default_factory=dict)


def prepare_trees(
    src_path: Path, dem: DemGrid, *, boundary: shapely.Geometry | None, mapping: FieldMapping | None = None,
    src_crs: str | None = None,
    encoding: str | None = None,
    layer: str | None = None,
) -> tuple[InstanceSet, RunReport]:
    """Read, check and place tree points (no files written)."""
    src = read_layer(src_path, TREE_SPECS, layer_name="trees", mapping=mapping, src_crs=src_crs,
                     encoding=encoding, layer=layer)
    return trees_from_layer(src, dem, boundary)


def trees_from_layer(src: SourceLayer, dem: DemGrid, boundary: shapely.Geometry | None,
                     after_clean: Callable[[RunReport, np.ndarray], None] | None = None
                     ) -> tuple[InstanceSet, RunReport]:
    """The checks and placement of :func:`prepare_trees` on a layer already read (a partition's:
    ``after_clean`` runs right after the geometry rules)."""
    report = src.report
    geoms = check_features(src, "point", compare=["species", "height", "crown_diameter", "setting"],
                           boundary=boundary)
    if after_clean is not None:
        after_clean(report, geoms)
    height = numeric_column(src, "height")
    crown = numeric_column(src, "crown_diameter")
    alive = np.array([g is not None for g in geoms], dtype=bool) & ~report.rejected_mask()
    absurd = alive & np.isfinite(height) & ((height <= 0) | (height > MAX_TREE_HEIGHT_M))
    if absurd.any():
        rows = np.flatnonzero(absurd)
        report.reject(rows, "absurd_height",
                      [f"height {height[r]:g} m not in (0, {MAX_TREE_HEIGHT_M:g}]" for r in rows],
                      field="height", value=[height[r] for r in rows])
    alive &= ~absurd
    no_h = alive & ~np.isfinite(height)
    if no_h.any():
        report.repair(no_h, "default_height", f"no height: {DEFAULT_TREE_HEIGHT_M:g} m", field="height")
        height = np.where(no_h, DEFAULT_TREE_HEIGHT_M, height)
    bad_crown = alive & ~(np.isfinite(crown) & (crown > 0) & (crown <= 40))
    derived = np.clip(0.6 * height, 1.5, 15.0)
    if bad_crown.any():
        rows = np.flatnonzero(bad_crown)
        report.repair(rows, "crown_from_height",
                      [f"crown diameter {crown[r]!s} unusable: {derived[r]:.1f} m (0.6 x height)"
                       for r in rows],
                      field="crown_diameter")
        crown = np.where(bad_crown, derived, crown)
    rows = np.flatnonzero(alive)
    xy = shapely.get_coordinates(np.array(list(geoms[rows]), dtype=object)).reshape(-1, 2)
    base = sample_heights(dem, xy[:, 0], xy[:, 1])
    off = ~np.isfinite(base)
    if off.any():
        report.reject(rows[off], "outside_dem", "no DEM height at this point (outside the DEM or nodata)")
        rows, xy, base = rows[~off], xy[~off], base[~off]
    species, setting, ids = text_column(src, "species"), text_column(src, "setting"), report.ids
    kinds = np.array([tree_kind(s) for s in species[rows]], dtype=object)
    templates = {k: tree_template(k) for k in sorted(set(kinds.tolist()))}
    yaw = np.array([zlib.crc32(str(ids[r]).encode()) % 360 for r in rows], dtype=np.float64)
    h, c = height[rows], crown[rows]
    inst = InstanceSet(
        xy=xy, base_h=base, heading_grid=yaw, template_keys=kinds, templates=templates,
        scales=np.column_stack([c, c, h]), priority=h, size=h,
        columns={
            "id": PropertyColumn([str(ids[r]) for r in rows], "STRING", required=True),
            "species": PropertyColumn(species[rows].tolist(), "STRING"),
            "height": PropertyColumn(h.astype(np.float32), "FLOAT32", description="m above ground"),
            "crown_diameter": PropertyColumn(c.astype(np.float32), "FLOAT32", description="m"),
            "setting": PropertyColumn(setting[rows].tolist(), "STRING"),
            "base_height": PropertyColumn(base.astype(np.float32), "FLOAT32",
                                          description="orthometric ground height (m)"),
        },
        rows=rows,
    )
    return inst, report


def _green_rank(area: np.ndarray) -> np.ndarray:
    return np.select([area > 20_000, area > 2_000, area > 200], [99, 2, 1], 0)


def prepare_areas(dem: DemGrid, *, green_path: Path | None, water_path: Path | None,
                  boundary: shapely.Geometry | None) -> tuple[SurfaceSet | None, list[RunReport]]:
    """Green spaces and water as one surface set (water first, then green smallest first)."""
    reports: list[RunReport] = []
    polys: list[Any] = []
    meta: dict[str, list[Any]] = {"id": [], "layer": [], "kind": [], "name": [], "water_level": []}
    lift, level, colors, rank, rows_all = [], [], [], [], []
    if water_path is not None:
        src = read_layer(water_path, WATER_SPECS, layer_name="water")
        rep = src.report
        geoms = check_features(src, "polygon", compare=["name", "kind", "water_level"], boundary=boundary)
        wl = numeric_column(src, "water_level")
        kind, name = text_column(src, "kind"), text_column(src, "name")
        for r in np.flatnonzero([g is not None for g in geoms]):
            if r in rep.rejected:
                continue
            if not np.isfinite(wl[r]):
                ring = shapely.get_coordinates(geoms[r].exterior if geoms[r].geom_type == "Polygon"
                                               else shapely.get_exterior_ring(shapely.get_parts(geoms[r])[0]))
                ground = sample_heights(dem, ring[:, 0], ring[:, 1], clamp=True)
                wl[r] = float(np.nanmin(ground)) if np.isfinite(ground).any() else 0.0
                rep.repair(r, "level_from_dem", f"no water level: lowest shore ground {wl[r]:.2f} m",
                           field="water_level")
            polys.append(geoms[r])
            meta["id"].append(str(rep.ids[r]))
            meta["layer"].append("water")
            meta["kind"].append(kind[r])
            meta["name"].append(name[r])
            meta["water_level"].append(wl[r])
            lift.append(WATER_LIFT_M)
            level.append(wl[r])
            colors.append(color_u8(WATER_COLORS.get(kind[r] or "", "#4585bd")))
            rank.append(99)
            rows_all.append(("water", r))
        reports.append(rep)
    if green_path is not None:
        src = read_layer(green_path, GREEN_SPECS, layer_name="green")
        rep = src.report
        geoms = check_features(src, "polygon", compare=["kind", "name"], boundary=boundary)
        kind, name = text_column(src, "kind"), text_column(src, "name")
        alive = [r for r in np.flatnonzero([g is not None for g in geoms]) if r not in rep.rejected]
        alive.sort(key=lambda r: shapely.area(geoms[r]))
        for r in alive:
            polys.append(geoms[r])
            meta["id"].append(str(rep.ids[r]))
            meta["layer"].append("green")
            meta["kind"].append(kind[r])
            meta["name"].append(name[r])
            meta["water_level"].append(np.nan)
            lift.append(GREEN_LIFT_M)
            level.append(np.nan)
            colors.append(color_u8(GREEN_COLORS.get(kind[r] or "", "#74b060")))
            rank.append(int(_green_rank(np.array([shapely.area(geoms[r])]))[0]))
            rows_all.append(("green", r))
        reports.append(rep)
    if not polys:
        return None, reports
    arr = np.array(polys, dtype=object)
    resolved = subtract_earlier(arr)  # water first, then green smallest first: earlier wins
    s = SurfaceSet(
        polygons=resolved, lift=np.array(lift), flat_level=np.array(level, float), colors=np.array(colors),
        lod_rank=np.array(rank), size=np.sqrt(shapely.area(arr)),
        columns={
            "id": PropertyColumn(meta["id"], "STRING", required=True),
            "layer": PropertyColumn(meta["layer"], "STRING", required=True),
            "kind": PropertyColumn(meta["kind"], "STRING"),
            "name": PropertyColumn(meta["name"], "STRING"),
            "water_level": PropertyColumn(meta["water_level"], "FLOAT32", no_data=-9999.0,
                                          description="orthometric (m)"),
        },
        rows=np.array([r for _, r in rows_all]),
    )
    for rep in reports:
        layer_rows = [r for lyr, r in rows_all if lyr == rep.layer]
        rep.mark_written(np.array(layer_rows, np.int64))
    return s, reports


def region_of(box: OrientedBox, transform: list[float]) -> list[float]:
    """A 3D Tiles ``region`` (radians, ellipsoidal metres) enclosing a box in a transformed frame."""
    m = np.asarray(transform, float).reshape(4, 4).T
    corners = box.corners() @ m[:3, :3].T + m[:3, 3]
    llh = ecef_to_lonlat_ellipsoidal(corners)
    lon, lat = np.radians(llh[:, 0]), np.radians(llh[:, 1])
    return [float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max()),
            float(llh[:, 2].min()), float(llh[:, 2].max())]


def write_group_tileset(out_dir: Path, children: list[tuple[str, Path]]) -> Path:
    """A content-less root referencing external tilesets (``(name, path to tileset.json)``)."""
    tiles, regions, errors = [], [], []
    for _, path in children:
        ts = json.loads(path.read_text())
        root = ts["root"]
        region = region_of(OrientedBox.from_json(root["boundingVolume"]["box"]), root["transform"])
        regions.append(region)
        errors.append(float(ts["geometricError"]))
        tiles.append({"boundingVolume": {"region": region}, "geometricError": float(ts["geometricError"]),
                      "content": {"uri": path.relative_to(out_dir).as_posix()}})
    r = np.array(regions)
    union = [r[:, 0].min(), r[:, 1].min(), r[:, 2].max(), r[:, 3].max(), r[:, 4].min(), r[:, 5].max()]
    doc = {"asset": {"version": "1.1", "generator": "onemap"}, "geometricError": max(errors) * 2,
           "root": {"boundingVolume": {"region": [float(v) for v in union]}, "geometricError": max(errors),
                    "refine": "ADD", "children": tiles}}
    path = out_dir / "tileset.json"
    path.write_text(json.dumps(doc, separators=(",", ":")), encoding="utf-8")
    return path


@dataclass
class VegetationOptions:
    """Options of :func:`build_vegetation` (``onemap tiles trees``)."""

    dem: Path | None = None  # orthometric DEM: tree bases, green draping (flat 0 m without)
    green: Path | None = None  # green-space polygons to drape
    water: Path | None = None  # water polygons, flat at water_level
    boundary: Path | None = None  # district polygon (default: boundary.gpkg beside SRC)
    mapping: FieldMapping | Path | None = None  # field mapping of the tree layer, or its YAML path
    src_crs: str | None = None
    encoding: str | None = None  # of a Shapefile without .cpg / a CSV
    layer: str | None = None  # of a multi-layer file
    geoid: str | None = None
    dry_run: bool = False  # read, check and report; publish nothing (the report goes to OUT)
    max_per_leaf: int = 2000
    # spatial partitions of the trees (docs/scale.md): level (None = from the feature count, 0 = one
    # piece), target trees per partition, Dask scheduler (None = ONEMAP_DASK_SCHEDULER, else in-process)
    partition_level: int | None = None
    partition_features: int = 20_000
    dask: str | None = None


def build_vegetation(src: Path, out: Path, options: VegetationOptions | None = None,
                     progress: Progress | None = None) -> VegetationResult:
    """The ``onemap tiles trees`` pipeline (trees + optional green and water): stages
    ``tileset.json``, ``trees/``, ``areas/`` and the report in ``OUT.tmp-<pid>`` and publishes
    them atomically once validated (a dry run writes only the report). Many trees run in spatial
    partitions (:mod:`pipelines.layer_partitions`), in-process or on Dask; green spaces and water
    (hundreds of polygons) are built in one piece beside them."""
    from pipelines.layer_partitions import plan_layer

    o = options or VegetationOptions()
    plan = plan_layer("trees", src, o)
    if plan is not None:
        return _build_partitioned(plan, Path(src), Path(out), o, progress)
    return _build_whole(src, out, o, progress)


@in_run_frame
def _build_whole(src: Path, out: Path, options: VegetationOptions, progress: Progress | None) -> VegetationResult:
    o = options
    src, out = Path(src), Path(out)
    staging = None if o.dry_run else Staging(out)
    try:
        say(progress, "read", 0, 1)
        dem, boundary, mapping = resolve_inputs(src, o.dem, o.boundary, o.mapping)
        inst, trees_report = prepare_trees(src, dem, boundary=boundary, mapping=mapping, src_crs=o.src_crs,
                                     encoding=o.encoding, layer=o.layer)
        if o.dem is None:
            trees_report.note("no DEM given: every base at 0 m orthometric")
        if boundary is None:
            trees_report.note("no boundary.gpkg found or given: outside_boundary not checked")
        trees_report.mark_written(inst.rows)
        areas, area_reports = prepare_areas(dem, green_path=o.green, water_path=o.water, boundary=boundary)
        say(progress, "read", 1, 1)
        reports = [trees_report, *area_reports]
        for rep in reports:
            rep.finalize()
        result = VegetationResult(reports, instances=inst, areas_set=areas)
        if staging is not None:
            tmp = staging.tmp
            children = []
            if inst.count:
                result.trees = build_instanced_tileset(inst, tmp / "trees", dem, class_name="tree",
                                                       description="trees (billboards)",
                                                       progress=for_stage(progress, "trees"),
                                                       max_per_leaf=o.max_per_leaf)
                trees_report.output.update(summary_dict(result.trees))
                children.append(("trees", result.trees.tileset))
            if areas is not None:
                frame = result.trees.frame if result.trees else None
                result.areas = build_surface_tileset(areas, tmp / "areas", dem, class_name="area",
                                                     description="green spaces and water", leaf_cell=10.0,
                                                     frame=frame, progress=for_stage(progress, "areas"))
                for rep in area_reports:
                    rep.output.update(result.areas.summary())
                children.append(("areas", result.areas.tileset))
            if children:
                write_group_tileset(tmp, children)
        for rep in reports:
            rep.output["heights"] = active_geoid().metadata()
        write_reports(staging.tmp if staging is not None else out, reports)
        if staging is not None:
            staging.publish()
            for build in (result.trees, result.areas):
                if build is not None:
                    build.tileset = out / build.tileset.relative_to(staging.tmp)
    except BaseException:
        if staging is not None:
            staging.abort()
        raise
    return result


def write_reports(out_dir: Path, reports: list[RunReport]) -> None:
    """One report.json/report.txt per run covering every layer of it."""
    from pipelines.report_merge import write_layers_json

    out_dir.mkdir(parents=True, exist_ok=True)
    write_layers_json(out_dir / "report.json", reports)  # a partitioned run's issues streamed
    (out_dir / "report.txt").write_text("\n".join(r.summary_text() for r in reports), encoding="utf-8")


# ------------------------------------------------------------------------------------ partitions
def _build_partitioned(plan: Any, src: Path, out: Path, o: VegetationOptions,
                       progress: Progress | None) -> VegetationResult:
    """Trees in partitions (``OUT/trees``), the areas in one piece (``OUT/areas``), one report."""
    from pyproj import CRS

    from core.delivery.checks import find_boundary, load_boundary
    from core.frames import EnuFrame, using_geoid, using_working_crs
    from pipelines.layer_scale import run_layer_partitioned

    staging = None if o.dry_run else Staging(out)
    try:
        with using_geoid(o.geoid), using_working_crs(CRS.from_wkt(plan.working_crs)):
            tmp = staging.tmp if staging is not None else None
            run = run_layer_partitioned(plan, out, o, tmp / "trees" if tmp is not None else None, progress)
            trees_report = run.report
            if o.dem is None:
                trees_report.note("no DEM given: every base at 0 m orthometric")
            boundary = load_boundary(find_boundary(src, o.boundary))
            if boundary is None:
                trees_report.note("no boundary.gpkg found or given: outside_boundary not checked")
            dem = DemGrid.read(o.dem) if o.dem and (o.green or o.water) else DemGrid.flat()  # for the areas only
            areas, area_reports = prepare_areas(dem, green_path=o.green, water_path=o.water, boundary=boundary)
            reports = [trees_report, *area_reports]
            for rep in reports:
                rep.finalize()
            trees_report.output.update(run.output)
            result = VegetationResult(reports, areas_set=areas)
            if tmp is not None:
                children = [("trees", run.tileset)] if run.tileset is not None else []
                if areas is not None:
                    result.areas = build_surface_tileset(areas, tmp / "areas", dem, class_name="area",
                                                         description="green spaces and water", leaf_cell=10.0,
                                                         frame=EnuFrame.at_lonlat(*plan.frame),
                                                         progress=for_stage(progress, "areas"))
                    for rep in area_reports:
                        rep.output.update(result.areas.summary())  # type: ignore[union-attr]
                    children.append(("areas", result.areas.tileset))  # type: ignore[union-attr]
                if children:
                    write_group_tileset(tmp, children)  # type: ignore[arg-type]
            for rep in reports:
                rep.output["heights"] = active_geoid().metadata()
            write_reports(tmp if tmp is not None else out, reports)
            if staging is not None:
                staging.publish()
                if result.areas is not None:
                    result.areas.tileset = out / result.areas.tileset.relative_to(staging.tmp)
    except BaseException:
        if staging is not None:
            staging.abort()
        raise
    run.cleanup()
    return result


def _partition_prepare(src: SourceLayer, dem: DemGrid, boundary: shapely.Geometry | None,
                       after_clean: Callable[[RunReport, np.ndarray], None], owned: np.ndarray
                       ) -> tuple[InstanceSet, RunReport, np.ndarray, dict[str, Any]]:
    from pipelines.partition_content import subset_instances

    inst, report = trees_from_layer(src, dem, boundary, after_clean)
    inst = subset_instances(inst, np.flatnonzero(owned[inst.rows]))
    return inst, report, inst.rows, {}


PARTITION_WORKER = LayerWorker(
    name="trees", kind="instances", specs=TREE_SPECS, prepare=_partition_prepare, template=tree_template,
    build_kw={"class_name": "tree", "description": "trees (billboards)"})
