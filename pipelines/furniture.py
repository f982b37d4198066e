"""Street furniture points → instanced 3D Tiles (one schematic template per ``type``).

Input (docs/sample-delivery.md ``furniture.gpkg``): ``id``, ``type``, ``heading`` (deg clockwise
from grid north), ``height`` (m above ground), ``name``, ``road_id``. Bus shelters, street
lamps, billboards and traffic signals are placed at their exact surveyed point and heading; the
shape is schematic (:mod:`tiles.models`), scaled vertically to the surveyed height and
horizontally by the same factor clamped to [0.75, 1.33] so proportions stay plausible.

Checks: common ones (:mod:`core.delivery.checks`), ``unknown_type``, ``absurd_height`` (≤ 0 or
> 60 m), ``outside_dem``; repairs: missing height → template height, missing heading → 0.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from core.delivery.accounting import RunReport
from core.delivery.checks import check_features, numeric_column, text_column
from core.delivery.mapping import FieldMapping
from core.delivery.read import FieldSpec, SourceLayer, read_layer
from core.frames import active_geoid
from pipelines.drape import DemGrid, sample_heights
from pipelines.inputs import resolve_inputs
from pipelines.instanced import InstancedBuild, InstanceSet, build_instanced_tileset, summary_dict
from pipelines.layer_partitions import LayerWorker
from pipelines.progress import Progress, for_stage
from pipelines.progress import report as say
from pipelines.publish import Staging
from pipelines.run_frame import in_run_frame
from tiles.gltf import PropertyColumn
from tiles.models import FURNITURE_TYPES, furniture_template

log = logging.getLogger(__name__)

MAX_HEIGHT_M = 60.0
# thinning priority at coarse levels: landmarks first, small items last
PROMINENCE = {"sculpture": 12, "billboard": 11, "bus_shelter": 10, "toilet": 9, "kiosk": 8,
              "traffic_signal": 7, "street_lamp": 6, "sign": 5, "fitness": 4, "bench": 3,
              "waste_bin": 2, "fire_hydrant": 1}

SPECS = (
    FieldSpec("id", "str", required=True),
    FieldSpec("type", "str", required=True),
    FieldSpec("heading", "float"),
    FieldSpec("height", "float"),
    FieldSpec("name", "str"),
    FieldSpec("road_id", "str"),
)


@dataclass
class FurnitureResult:
    report: RunReport
    build: InstancedBuild | None
    instances: InstanceSet | None


def prepare_furniture(src_path: Path, dem: DemGrid, *, boundary: shapely.Geometry | None,
                      mapping: FieldMapping | None = None, src_crs: str | None = None,
                  encoding: str | None = None, layer: str | None = None) -> tuple[InstanceSet,
                                                                                              RunReport]:
    """Read, check and place furniture points (no files written)."""
    src = read_layer(src_path, SPECS, layer_name="furniture", mapping=mapping, src_crs=src_crs,
                     encoding=encoding, layer=layer)
    return furniture_from_layer(src, dem, boundary)


def furniture_from_layer(src: SourceLayer, dem: DemGrid, boundary: shapely.Geometry | None,
                         after_clean: Callable[[RunReport, np.ndarray], None] | None = None,
                         notes: bool = True) -> tuple[InstanceSet, RunReport]:
    """The checks and placement of :func:`prepare_furniture` on a layer already read (a
    partition's: ``after_clean`` runs right after the geometry rules, ``notes`` about the whole
    layer are left to the client)."""
    report = src.report
    geoms = check_features(src, "point", compare=["type", "heading", "height", "name"], boundary=boundary)
    if after_clean is not None:
        after_clean(report, geoms)
    kind = np.array([(t or "").strip().lower() for t in text_column(src, "type")], dtype=object)
    height = numeric_column(src, "height")
    heading = numeric_column(src, "heading")
    alive = np.array([g is not None for g in geoms], dtype=bool) & ~report.rejected_mask()

    unknown = alive & ~np.isin(kind, FURNITURE_TYPES)
    if unknown.any():
        rows = np.flatnonzero(unknown)
        report.reject(rows, "unknown_type",
                      [f"type {kind[r]!r} is not one of {', '.join(FURNITURE_TYPES)}" for r in rows],
                      field="type", value=[kind[r] for r in rows])
    alive &= ~unknown
    absurd = alive & np.isfinite(height) & ((height <= 0) | (height > MAX_HEIGHT_M))
    if absurd.any():
        rows = np.flatnonzero(absurd)
        report.reject(rows, "absurd_height",
                      [f"height {height[r]:g} m not in (0, {MAX_HEIGHT_M:g}]" for r in rows],
                      field="height", value=[height[r] for r in rows])
    alive &= ~absurd
    nominal = np.array([furniture_template(k).meta.get("nominal_height", furniture_template(k).height)
                        if k in FURNITURE_TYPES else 1.0 for k in kind])
    no_h = alive & ~np.isfinite(height)
    if no_h.any():
        rows = np.flatnonzero(no_h)
        report.repair(rows, "default_height", [f"no height: the {kind[r]} template's {nominal[r]:g} m"
                                               for r in rows], field="height")
        height = np.where(no_h, nominal, height)
    no_heading = alive & ~np.isfinite(heading)
    if no_heading.any():
        report.repair(np.flatnonzero(no_heading), "default_heading", "no heading: facing grid north (0°)",
                      field="heading")
        heading = np.where(no_heading, 0.0, heading)

    rows = np.flatnonzero(alive)
    xy = shapely.get_coordinates(np.array(list(geoms[rows]), dtype=object)).reshape(-1, 2)
    base = sample_heights(dem, xy[:, 0], xy[:, 1])
    off = ~np.isfinite(base)
    if off.any():
        report.reject(rows[off], "outside_dem", "no DEM height at this point (outside the DEM or nodata)")
        rows, xy, base = rows[~off], xy[~off], base[~off]
    if notes:
        _sculpture_notes(report, int(np.sum(kind[rows] == "sculpture")),
                         int(np.sum((kind[rows] == "sculpture") & (height[rows] <= 2.5))))

    sz = height[rows] / nominal[rows]
    sxy = np.clip(sz, 0.75, 1.33)
    keys = kind[rows]
    templates = {k: furniture_template(k) for k in sorted(set(keys.tolist()))}
    radius = np.array([templates[k].radius_xy for k in keys])
    names, road_ids, ids = text_column(src, "name"), text_column(src, "road_id"), report.ids
    inst = InstanceSet(
        xy=xy, base_h=base, heading_grid=np.mod(heading[rows], 360.0), template_keys=keys,
        templates=templates,
        scales=np.column_stack([sxy, sxy, sz]),
        priority=np.array([PROMINENCE[k] for k in keys]) * 1000.0 + height[rows],
        size=np.maximum(height[rows], 2 * radius * sxy),
        columns={
            "id": PropertyColumn([str(ids[r]) for r in rows], "STRING", required=True),
            "type": PropertyColumn(keys.tolist(), "STRING", required=True),
            "name": PropertyColumn(names[rows].tolist(), "STRING"),
            "height": PropertyColumn(height[rows].astype(np.float32), "FLOAT32",
                                     description="m above ground"),
            "heading": PropertyColumn(np.mod(heading[rows], 360.0).astype(np.float32), "FLOAT32",
                                      description="degrees clockwise from grid north (EPSG:4548)"),
            "road_id": PropertyColumn(road_ids[rows].tolist(), "STRING"),
            "base_height": PropertyColumn(base.astype(np.float32), "FLOAT32",
                                          description="orthometric ground height (m)"),
        },
        rows=rows,
    )
    return inst, report


def _sculpture_notes(report: RunReport, sculptures: int, low: int) -> None:
    if sculptures > 3:
        report.note(f"{sculptures} sculptures (the specification allows at most 3 in the scene)")
    if low:
        report.note(f"{low} sculptures are ≤ 2.5 m (the specification models only taller ones)")


@dataclass
class FurnitureOptions:
    """Options of :func:`build_furniture` (``onemap tiles furniture``)."""

    dem: Path | None = None  # orthometric DEM for the bases (flat 0 m without)
    boundary: Path | None = None  # district polygon (default: boundary.gpkg beside SRC)
    mapping: FieldMapping | Path | None = None  # field mapping, or its YAML path
    src_crs: str | None = None
    encoding: str | None = None  # of a Shapefile without .cpg / a CSV
    layer: str | None = None  # of a multi-layer file
    geoid: str | None = None
    dry_run: bool = False  # read, check and report; publish nothing (the report goes to OUT)
    max_per_leaf: int = 2000
    # spatial partitions (docs/scale.md): level (None = from the feature count, 0 = one piece),
    # target features per partition, Dask scheduler (None = ONEMAP_DASK_SCHEDULER, else in-process)
    partition_level: int | None = None
    partition_features: int = 20_000
    dask: str | None = None


def build_furniture(src: Path, out: Path, options: FurnitureOptions | None = None,
                    progress: Progress | None = None) -> FurnitureResult:
    """The ``onemap tiles furniture`` pipeline: stages the tileset and the report in
    ``OUT.tmp-<pid>`` and publishes them atomically once validated (a dry run writes only the report).
    Big inputs run in spatial partitions (:mod:`pipelines.layer_partitions`), in-process or on Dask."""
    from pipelines.layer_partitions import plan_layer

    o = options or FurnitureOptions()
    plan = plan_layer("furniture", src, o)
    if plan is not None:
        from pipelines.layer_scale import build_layer_partitioned

        return FurnitureResult(build_layer_partitioned(plan, Path(src), Path(out), o, progress), None, None)
    return _build_whole(src, out, o, progress)


@in_run_frame
def _build_whole(src: Path, out: Path, options: FurnitureOptions, progress: Progress | None) -> FurnitureResult:
    o = options
    src, out = Path(src), Path(out)
    staging = None if o.dry_run else Staging(out)
    try:
        say(progress, "read", 0, 1)
        dem, boundary, mapping = resolve_inputs(src, o.dem, o.boundary, o.mapping)
        inst, report = prepare_furniture(src, dem, boundary=boundary, mapping=mapping, src_crs=o.src_crs,
                                     encoding=o.encoding, layer=o.layer)
        say(progress, "read", 1, 1)
        if o.dem is None:
            report.note("no DEM given: every base at 0 m orthometric")
        if boundary is None:
            report.note("no boundary.gpkg found or given: outside_boundary not checked")
        report.mark_written(inst.rows)
        report.finalize()
        build = None
        if staging is not None and inst.count:
            build = build_instanced_tileset(inst, staging.tmp, dem, class_name="furniture",
                                            description="street furniture", progress=for_stage(progress, "furniture"),
                                            max_per_leaf=o.max_per_leaf)
            report.output.update(summary_dict(build))
            types, counts = np.unique(inst.template_keys.astype(str), return_counts=True)
            report.output["by_type"] = dict(zip(types.tolist(), counts.tolist(), strict=True))
        report.output["heights"] = active_geoid().metadata()
        report.write(staging.tmp if staging is not None else out)
        if staging is not None:
            staging.publish()
            if build is not None:
                build.tileset = out / build.tileset.relative_to(staging.tmp)
    except BaseException:
        if staging is not None:
            staging.abort()
        raise
    return FurnitureResult(report, build, inst)


# ------------------------------------------------------------------------------------ partitions
def _partition_prepare(src: SourceLayer, dem: DemGrid, boundary: shapely.Geometry | None,
                       after_clean: Callable[[RunReport, np.ndarray], None], owned: np.ndarray
                       ) -> tuple[InstanceSet, RunReport, np.ndarray, dict[str, Any]]:
    from pipelines.partition_content import subset_instances

    inst, report = furniture_from_layer(src, dem, boundary, after_clean, notes=False)
    inst = subset_instances(inst, np.flatnonzero(owned[inst.rows]))
    keys = inst.template_keys.astype(str)
    types, counts = np.unique(keys, return_counts=True)
    heights = np.asarray(inst.columns["height"].values, float)
    stats = {"by_type": dict(zip(types.tolist(), counts.tolist(), strict=True)),
             "sculptures": int(np.sum(keys == "sculpture")),
             "low_sculptures": int(np.sum((keys == "sculpture") & (heights <= 2.5)))}
    return inst, report, inst.rows, stats


def _partition_finish(report: RunReport, stats: dict[str, Any]) -> None:
    _sculpture_notes(report, int(stats.get("sculptures", 0)), int(stats.get("low_sculptures", 0)))
    report.output["by_type"] = dict(sorted(stats.get("by_type", {}).items()))


PARTITION_WORKER = LayerWorker(
    name="furniture", kind="instances", specs=SPECS, prepare=_partition_prepare, template=furniture_template,
    finish=_partition_finish, build_kw={"class_name": "furniture", "description": "street furniture"})
