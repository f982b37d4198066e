"""Buildings pipeline: survey footprints → hierarchical 3D Tiles 1.1 (glb + EXT_structural_metadata).

Stages (all vectorised over the whole layer):

1. **read** (:mod:`core.delivery.read`): any vector format/CRS, field mapping, lenient numbers.
2. **clean**: the delivery layer's rules (:mod:`core.delivery.rules`, docs/delivery.md), the same
   the PostGIS loader applies, so tiles and database accept the same buildings; then
   no height → ``floors × floor_height`` (repair ``height_from_floors``); neither with
   ``--missing-height default`` → ``default_height``.
3. **ground**: base = lowest DEM height under the footprint (orthometric), so walls reach the
   ground everywhere; ellipsoidal = orthometric + EGM96 N (:mod:`core.frames`).
4. **tile**: a quadtree over the buildings (≤ ``max_features`` per leaf). Leaves hold every
   building at full LOD (LOD2 roofs, or LOD1). Inner tiles (refine REPLACE) hold the
   ``max_features`` tallest buildings of their subtree as LOD1 prisms on simplified footprints.
   A tile's geometricError is MEASURED against the leaves: the max over its subtree of
   ``height`` for omitted buildings (they vanish: every point is within ``height`` of the
   ground) and ``hypot(hausdorff(simplified, footprint), LOD2 roof drop)`` for kept ones; leaves
   have 0; the tileset's is the tallest building (nothing drawn).
5. **publish** (:mod:`pipelines.publish`): unchanged tiles reused via the manifest; atomic swap.

Roof inference when ``roof_type`` is missing (documented rule, :func:`infer_roof`):
flat if the building is narrow (< 4 m), large (> 1500 m²) or tall (> 24 m); otherwise
courtyard houses get gable roofs; industrial/market/commercial/office/hospital/school get flat
roofs; residential and public buildings ≤ 12 m get gable roofs when elongated (length/width ≥
1.4) and hip roofs when squarish; everything else is flat.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import shapely
from pyproj import CRS, Transformer

from core.delivery import rules
from core.delivery.accounting import RunReport
from core.delivery.cityjson import is_cityjson
from core.delivery.mapping import FieldMapping, load_mapping
from core.delivery.read import FieldSpec, SourceLayer, read_layer
from core.frames import (
    EnuFrame,
    active_geoid,
    geoid_undulation,
    local_tm_crs,
    projected_to_lonlat,
    using_geoid,
    working_crs_for,
)
from pipelines.building_tiles import EncoderState, TileJob, building_colors, run_jobs, size_report, tile_fingerprint
from pipelines.ground import Ground
from pipelines.progress import Progress
from pipelines.publish import Staging, digest, read_manifest, write_manifest
from tiles import building_mesh as bm
from tiles.tileset import (
    OrientedBox,
    Tile,
    Tileset,
    box_enclosing,
    build_quadtree,
    enforce_monotonic_errors,
    snapped_square,
)

log = logging.getLogger(__name__)

PIPELINE_VERSION = "buildings-1"

#: the command-line options of `onemap tiles buildings` that map a canonical field (named in hints)
FIELD_OPTIONS = {"id": "--id-field", "height": "--height-field", "floors": "--floors-field",
                 "roof_type": "--roof-field"}

BUILDING_SPECS: tuple[FieldSpec, ...] = (
    FieldSpec("id", required=True),
    FieldSpec("name"),
    FieldSpec("floors", "float"),  # fractional floors (3.5, OSM building:levels) are valid
    FieldSpec("height", "float"),
    FieldSpec("use"),
    FieldSpec("roof_type"),
    FieldSpec("community"),
)


@dataclass
class BuildingOptions:
    """Options of :func:`build_buildings` (the CLI maps its flags onto these)."""

    fields: dict[str, str | None] = field(default_factory=dict)  # canonical → source field
    mapping: Path | None = None
    encoding: str | None = None
    src_crs: str | None = None
    layer: str | None = None
    dem: Path | None = None
    boundary: Path | None = None
    floor_height: float = 3.0
    missing_height: Literal["reject", "default"] = "reject"
    default_height: float = 9.0
    max_height: float = 500.0
    max_floors: float = 120.0
    lod: int = 2
    lod_pick: str | None = None  # CityJSON: the exact LOD to keep when several exist (e.g. "1.3", "2.2")
    max_features: int = 1000
    roof_pitch_deg: float = 30.0
    expected_crs: str | None = None  # the delivery's CRS is used as is (core.frames.working_crs_for)
    geoid: str | None = None  # egm96 (default) | none | PATH of a GTX/GeoTIFF grid
    dry_run: bool = False
    gzip_level: int = 6
    compress: str = "none"  # tiles.gltf.COMPRESSIONS: none | draco (KHR_draco_mesh_compression)
    workers: int = field(default_factory=lambda: min(2, os.cpu_count() or 1))
    # spatial partitions (pipelines.building_partitions): quadtree level of the cells (None = from
    # the feature count, 0 = one partition), target buildings per partition, and the Dask engine
    partition_level: int | None = None
    partition_features: int = 10_000
    dask: str | None = None  # tcp://host:8786 | local:N | None (ONEMAP_DASK_SCHEDULER, else in-process)


@dataclass
class PreparedBuildings:
    """Clean buildings ready for meshing (working metric CRS, orthometric heights)."""

    rows: np.ndarray  # (B,) source row of each building
    ids: np.ndarray
    names: np.ndarray
    uses: np.ndarray
    communities: np.ndarray
    roof_names: np.ndarray
    floors: np.ndarray  # float, NaN = unknown
    height: np.ndarray  # metres above base
    roof: np.ndarray  # ROOF_* codes
    footprints: np.ndarray  # shapely (Multi)Polygons in working_crs
    base: np.ndarray  # orthometric ground under the footprint
    working_crs: CRS
    report: RunReport
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # property name → (B,) delivery attribute
    roof_drop: np.ndarray | None = None  # (B,) ridge to eaves of real roofs (CityJSON), m

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        return {k: getattr(self, k)[idx] for k in ("ids", "names", "uses", "communities", "roof_names",
                                                   "floors", "height", "base")}


@dataclass
class BuildResult:
    out: Path | None
    report: RunReport
    tiles: int = 0
    tiles_written: int = 0
    tiles_reused: int = 0
    bytes: int = 0
    gzip_bytes: int = 0
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        c = self.report.counts
        return {**c, "tiles": self.tiles, "tiles_written": self.tiles_written,
                "tiles_reused": self.tiles_reused, "bytes": self.bytes, "gzip_bytes": self.gzip_bytes,
                **{k: v for k, v in self.report.output.items()
                   if k in ("compress", "bytes_per_building", "raw_bytes_per_building")},
                "seconds": round(self.seconds, 3)}


# ------------------------------------------------------------------------------------ cleaning
def infer_roof(use: np.ndarray, height: np.ndarray, area: np.ndarray, length: np.ndarray,
               width: np.ndarray) -> np.ndarray:
    """Roof code per building from use, height, footprint size and shape (module docstring rule)."""
    use = np.asarray(use, dtype=object)
    kind = np.full(len(use), bm.ROOF_FLAT)
    low = height <= 12.0
    elongated = length >= 1.4 * np.maximum(width, 1e-9)
    homely = np.isin(use, ["residential", "public"]) & low
    kind[homely & elongated] = bm.ROOF_GABLE
    kind[homely & ~elongated] = bm.ROOF_HIP
    kind[use == "courtyard_house"] = bm.ROOF_GABLE
    kind[(width < 4.0) | (area > 1500.0) | (height > 24.0)] = bm.ROOF_FLAT
    return kind


def _transform_geoms(geoms: np.ndarray, src: CRS, dst: CRS) -> np.ndarray:
    if src.equals(dst):
        return geoms
    t = Transformer.from_crs(src, dst, always_xy=True)
    return shapely.transform(geoms, lambda c: np.column_stack(t.transform(c[:, 0], c[:, 1])))


def read_boundary(path: Path, working_crs: CRS, src_crs: str | None = None) -> shapely.Geometry:
    layer = read_layer(path, (), layer_name="boundary", src_crs=src_crs, expected_crs=None)
    geoms = np.asarray(layer.gdf.geometry.values, dtype=object)
    geoms = geoms[~(shapely.is_missing(geoms) | shapely.is_empty(geoms))]
    return shapely.union_all(shapely.make_valid(_transform_geoms(geoms, layer.crs, working_crs)))


def prepare_buildings(layer: SourceLayer, options: BuildingOptions, ground: Ground | None = None,
                      progress: Progress | None = None, *, working: CRS | None = None,
                      after_clean: Callable[[RunReport, np.ndarray], None] | None = None,
                      require: bool = True) -> PreparedBuildings:
    """Clean, repair and reject (see module docstring); compute heights, roofs and bases.

    Partitions (:mod:`pipelines.building_partitions`) pass the run's ``working`` CRS, an
    ``after_clean`` hook (duplicate ids across partitions) and ``require=False`` (a partition
    may accept nothing)."""
    report = layer.report
    gdf = layer.gdf
    n = len(gdf)
    geoms = np.asarray(gdf.geometry.values, dtype=object)
    ids = report.ids

    # the delivery layer's rules (core.delivery.rules), in a local metric frame: the loaders
    # (gis/loaders) apply the same ones, so the tiles and PostGIS accept the same buildings
    present = ~report.rejected_mask() & ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    if working is None:
        working = (working_crs_for(shapely.total_bounds(geoms[present]), layer.crs) if present.any()
                   else local_tm_crs(117.39, 32.93))
    work = np.full(n, None, dtype=object)
    work[present] = _transform_geoms(geoms[present], layer.crs, working)
    boundary = read_boundary(options.boundary, working, options.src_crs) if options.boundary is not None else None
    attr_cols = [c for c in gdf.columns if c not in ("id", gdf.geometry.name)]
    work = rules.clean_features(report, work, "polygon", attrs={c: gdf[c].to_numpy(dtype=object) for c in attr_cols},
                                boundary=boundary)
    if after_clean is not None:
        after_clean(report, work)
    alive = ~report.rejected_mask()
    work[alive] = shapely.remove_repeated_points(work[alive], 0.005)

    # heights
    floors = gdf["floors"].to_numpy(dtype=float)
    height = gdf["height"].to_numpy(dtype=float)
    alive = rules.check_building_heights(report, floors, height, alive, max_height=options.max_height,
                                         max_floors=options.max_floors, missing=options.missing_height)
    floors = np.where(floors > 0, floors, np.nan)
    has_h = np.isfinite(height)
    from_floors = alive & ~has_h & np.isfinite(floors)
    if from_floors.any():
        height[from_floors] = floors[from_floors] * options.floor_height
        report.repair(from_floors, "height_from_floors",
                      [f"no height; {f:g} floors × {options.floor_height:g} m = {h:g} m"
                       for f, h in zip(floors[from_floors], height[from_floors], strict=True)],
                      field="height")
    neither = alive & ~has_h & ~np.isfinite(floors)
    if neither.any():
        height[neither] = options.default_height
        report.repair(neither, "default_height",
                      f"no height and no floors; default {options.default_height:g} m", field="height")

    rows = np.flatnonzero(alive)
    if require:
        report.require_accepted(len(rows), "no building to publish",
                                hint="fix the delivery (the reasons are listed above)")
    foot = work[rows].astype(object)
    h = height[rows]

    # roofs
    roof_raw = gdf["roof_type"].to_numpy(dtype=object)[rows]
    roof = np.array([bm.ROOF_CODES.get(str(r).lower(), -1) if r is not None else -1 for r in roof_raw])
    unknown = np.array([r is not None for r in roof_raw], dtype=bool) & (roof < 0)
    if unknown.any():
        report.repair(rows[unknown], "roof_type_inferred",
                      [f"unknown roof type {r!r}; inferred from size/use" for r in roof_raw[unknown]],
                      field="roof_type", value=list(roof_raw[unknown]))
    need = roof < 0
    uses = gdf["use"].to_numpy(dtype=object)[rows]
    if need.any():
        frame = bm.roof_frames(foot[need])
        roof[need] = infer_roof(uses[need], h[need], shapely.area(foot[need]), frame.length, frame.width)

    # ground
    base = np.zeros(len(rows))
    if ground is not None and len(rows):
        base = ground.min_under(foot, working)
        nodata = ~np.isfinite(base)
        if nodata.any():
            fill = float(np.nanmedian(base)) if (~nodata).any() else 0.0
            base[nodata] = fill
            report.repair(rows[nodata], "base_outside_dem",
                          f"DEM has no data under the footprint; base set to the median ground {fill:.2f} m")
    elif len(rows):
        report.note("no --dem given: building bases at 0 m orthometric")

    return PreparedBuildings(
        rows=rows, ids=ids[rows].astype(object), names=gdf["name"].to_numpy(dtype=object)[rows],
        uses=uses, communities=gdf["community"].to_numpy(dtype=object)[rows],
        roof_names=np.array([bm.ROOF_NAMES[int(r)] for r in roof], dtype=object),
        floors=floors[rows], height=h, roof=roof, footprints=foot, base=base,
        working_crs=working, report=report,
    )


# ------------------------------------------------------------------------------------ build
def build_buildings(src: Path | str, out: Path | str | None, options: BuildingOptions | None = None,
                    progress: Progress | None = None) -> BuildResult:
    """Read, clean, mesh, tile and publish buildings; returns counts, sizes and the report."""
    options = options or BuildingOptions()
    geoid = options.geoid
    if geoid is None and is_cityjson(src):
        from pipelines.cityjson_buildings import default_geoid

        geoid = default_geoid(src)  # "none" when the model's heights are ellipsoidal
    with using_geoid(geoid):
        return _build_buildings(src, out, options, progress)


def _read_and_prepare(src: Path | str, options: BuildingOptions, stage: Callable[[str], None],
                      say: Progress) -> PreparedBuildings:
    """A footprint delivery (any vector format): read, DEM ground, clean."""
    mapping = load_mapping(options.mapping) if options.mapping else FieldMapping()
    say("read", 0, 1)
    layer = read_layer(src, BUILDING_SPECS, layer_name="buildings", fields=options.fields,
                       field_options=FIELD_OPTIONS, mapping=mapping,
                       encoding=options.encoding, src_crs=options.src_crs, layer=options.layer,
                       expected_crs=options.expected_crs)
    ground = None
    if options.dem is not None:
        geoms = np.asarray(layer.gdf.geometry.values, dtype=object)
        ok = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
        bounds = tuple(shapely.total_bounds(geoms[ok])) if ok.any() else None
        ground = Ground.open(options.dem, bounds=bounds, bounds_crs=layer.crs)
    stage("read")
    say("read", 1, 1)
    say("clean", 0, 1)
    b = prepare_buildings(layer, options, ground)
    return b


def _build_buildings(src: Path | str, out: Path | str | None, options: BuildingOptions,
                     progress: Progress | None) -> BuildResult:
    t0 = time.perf_counter()
    stages: dict[str, float] = {}
    tick = time.perf_counter()

    def stage(name: str) -> None:
        nonlocal tick
        now = time.perf_counter()
        stages[name] = round(now - tick, 4)
        tick = now

    def say(name: str, done: int, total: int) -> None:
        if progress:
            progress(name, done, total)

    if not is_cityjson(src):
        from pipelines.building_partitions import plan_partitions
        from pipelines.building_scale import build_partitioned

        plan = plan_partitions(src, options)
        if plan is not None:  # big input: spatial partitions, in-process or on Dask
            return build_partitioned(plan, out, options, progress)
    say("read", 0, 1)
    surfaces = surfaces_crs = None
    if is_cityjson(src):  # real 3D surfaces: base and heights come from the model itself
        from pipelines.cityjson_buildings import prepare_cityjson

        b, surfaces, surfaces_crs = prepare_cityjson(Path(src), options)
        stage("read")
        say("read", 1, 1)
    else:
        b = _read_and_prepare(src, options, stage, say)
    report = b.report
    stage("clean")
    say("clean", 1, 1)
    result = BuildResult(out=Path(out) if out else None, report=report)
    if len(b) == 0:
        report.mark_written([])
        report.finalize()
        if out is not None and not options.dry_run:
            staging = Staging(Path(out))
            report.write(staging.tmp)
            staging.publish()
        result.seconds = time.perf_counter() - t0
        return result

    # quadtree in the working CRS
    rp = shapely.point_on_surface(b.footprints)
    xy = np.column_stack([shapely.get_x(rp), shapely.get_y(rp)])
    square = snapped_square(xy, 250.0)
    tree = build_quadtree(xy, options.max_features, square)
    nodes = list(tree.post_order())
    result.tiles = len(nodes)
    if options.dry_run or out is None:
        report.mark_written(b.rows)
        report.finalize()
        result.seconds = time.perf_counter() - t0
        return result

    # frame: ENU at the root square centre, on the median ground
    cx, cy = 0.5 * (square[0] + square[2]), 0.5 * (square[1] + square[3])
    lon, lat = projected_to_lonlat(np.array([cx]), np.array([cy]), b.working_crs)
    h0 = round(float(np.median(b.base)), 0)
    h_ell = h0 + float(geoid_undulation(lon, lat)[0])
    frame = EnuFrame.at_lonlat(float(lon[0]), float(lat[0]), h_ell)

    lod2 = options.lod >= 2
    if surfaces is not None:  # leaves draw the real surfaces; inner tiles LOD1 prisms from them
        full_facets = bm.lod1_facets(b.footprints, b.base + b.height)
        roof_drop = b.roof_drop if b.roof_drop is not None else np.zeros(len(b))
    elif lod2:
        full_facets, roof_drop = bm.lod2_facets(b.footprints, b.base, b.height, b.roof,
                                                pitch_deg=options.roof_pitch_deg)
    else:
        full_facets, roof_drop = bm.lod1_facets(b.footprints, b.base + b.height), np.zeros(len(b))
    stage("roofs")

    # what each tile depends on → reuse unchanged tiles of the previous run
    wkb = shapely.to_wkb(b.footprints)
    settings = digest([PIPELINE_VERSION, str(options.lod), str(options.max_features),
                       f"{options.roof_pitch_deg}", b.working_crs.to_wkt(), repr(frame.origin_ecef),
                       repr(active_geoid()), options.compress,
                       "surfaces" if surfaces is None else digest([Path(src).read_bytes()])])
    old = read_manifest(Path(out))
    old_tiles = old.get("tiles", {}) if old.get("settings") == settings else {}
    staging = Staging(Path(out))
    try:
        depth_below: dict[str, int] = {}
        jobs: list[TileJob] = []
        hashes: dict[str, str] = {}
        contents: dict[str, np.ndarray] = {}
        for node in nodes:
            key = node.key
            depth_below[key] = 0 if node.is_leaf else 1 + max(depth_below[c.key] for c in node.children)
            subtree = np.sort(node.indices)
            if node.is_leaf:
                content = subtree
            else:
                order = np.lexsort((-shapely.area(b.footprints[subtree]), -b.height[subtree]))
                content = np.sort(subtree[order[:options.max_features]])
            contents[key] = content
            hashes[key] = digest([settings, key, "leaf" if node.is_leaf else "node",
                                  *tile_fingerprint(b, wkb, subtree)])
            prev = old_tiles.get(key)
            job = TileJob(key, node.is_leaf, content, subtree, depth_below[key])
            if prev and prev.get("hash") == hashes[key] and staging.reuse(job.uri):
                result.tiles_reused += 1
                continue
            jobs.append(job)
        stage("plan")
        state = EncoderState(b, full_facets, roof_drop, frame, lod2, staging.tmp, options.gzip_level,
                             building_colors(b, False), building_colors(b, True), surfaces, surfaces_crs,
                             compress=options.compress)
        encoded = run_jobs(state, jobs, options.workers, say)
        result.tiles_written = len(encoded)
        stage("tiles")

        new_tiles: dict[str, Any] = {}
        tiles_of: dict[str, Tile] = {}
        for node in nodes:
            key = node.key
            info = encoded.get(key) or old_tiles[key]
            uri = f"tiles/{key}.glb"
            new_tiles[key] = {"uri": uri, "hash": hashes[key],
                              "ids": [str(i) for i in b.ids[contents[key]]],
                              "content_box": info["content_box"], "error": info["error"],
                              "bytes": info["bytes"], "gzip_bytes": info["gzip_bytes"],
                              "raw_bytes": info.get("raw_bytes", info["bytes"])}
            children = [tiles_of[c.key] for c in node.children]
            box = box_enclosing([OrientedBox.from_json(info["content_box"]), *[c.box for c in children]])
            tiles_of[key] = Tile(box=box, geometric_error=float(info["error"]), content_uri=uri,
                                 children=children, refine="REPLACE")
            result.bytes += int(info["bytes"])
            result.gzip_bytes += int(info["gzip_bytes"])
        root = tiles_of[tree.key]
        enforce_monotonic_errors(root)
        root.transform = frame.tileset_transform()
        tileset = Tileset(root=root, geometric_error=max(float(b.height.max()), root.geometric_error),
                          extras={"layer": "buildings", "generator": PIPELINE_VERSION})
        tileset.write(staging.tmp / "tileset.json")
        report.mark_written(b.rows)
        report.finalize()
        result.seconds = time.perf_counter() - t0
        report.output.update({"tiles": result.tiles, "tiles_written": result.tiles_written,
                              "tiles_reused": result.tiles_reused, "bytes": result.bytes,
                              "gzip_bytes": result.gzip_bytes, "seconds": round(result.seconds, 3),
                              "lod": options.lod, "heights": active_geoid().metadata(),
                              **size_report(new_tiles.values(), len(b), options.compress)})
        report.write(staging.tmp)
        write_manifest(staging.tmp, {"version": PIPELINE_VERSION, "settings": settings, "tiles": new_tiles,
                                     "frame": {"origin_ecef": list(frame.origin_ecef), "lon": frame.lon_deg,
                                               "lat": frame.lat_deg}})
        stage("write")
        staging.publish()
    except BaseException:
        staging.abort()
        raise
    result.stage_seconds = stages
    result.seconds = time.perf_counter() - t0
    return result
