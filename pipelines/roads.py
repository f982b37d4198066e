"""Road centrelines + widths → draped road-surface 3D Tiles with bridge decks.

Surfaces. Each centreline is buffered by width/2 with flat caps; an end that meets another
road's end (a junction node) gets a disc of the same radius so corners close without gaps.
Overlaps are then resolved by *subtraction in priority order* (class primary → service, then
wider first, then id): each road keeps only the ground no earlier road covers. The pieces are
disjoint, keep their own road's feature id and metadata, and their union is the union of all
buffers — so junctions have no overlapping (z-fighting) triangles and every triangle still
belongs to exactly one road. Surfaces are draped on the DEM (grid-clipped, +0.15 m).

Bridges (``bridge`` = 1) are not draped and take no part in the subtraction: the deck follows
a straight grade between ``ground(start) + deck_height`` and ``ground(end) + deck_height``
(a smooth deck that ignores the riverbed below), with a 1 m deck slab and 1.1 m side barriers.

Checks: common ones (:mod:`core.delivery.checks`); ``absurd_value`` for width ≤ 0 or > 100 m and
deck_height < 0 or > 60 m; repairs: unknown class → residential, missing width → the class's
default, missing deck height on a bridge → 6 m.
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
from core.frames import EnuFrame, active_geoid
from pipelines.drape import TERRAIN_CLEARANCE_M, DemGrid, color_u8, sample_heights, to_enu, vertex_normals
from pipelines.inputs import resolve_inputs
from pipelines.layer_partitions import LayerWorker
from pipelines.progress import Progress, for_stage
from pipelines.progress import report as say
from pipelines.publish import Staging
from pipelines.run_frame import in_run_frame
from pipelines.surfaces import ExtraMesh, SurfaceBuild, SurfaceSet, build_surface_tileset, subtract_earlier
from tiles.gltf import PropertyColumn

log = logging.getLogger(__name__)

CLASSES = ("primary", "secondary", "tertiary", "residential", "service")
CLASS_RANK = {c: i for i, c in enumerate(CLASSES)}
DEFAULT_WIDTH = {"primary": 24.0, "secondary": 15.0, "tertiary": 10.0, "residential": 6.0, "service": 4.0}
CLASS_COLORS = {"primary": "#3c3f44", "secondary": "#46494e", "tertiary": "#505357", "residential": "#5d6064",
                "service": "#6b6d70"}
# kept in tiles up to this many levels above the leaves
CLASS_LOD = {"primary": 99, "secondary": 99, "tertiary": 2, "residential": 1, "service": 0}
ROAD_LIFT_M = TERRAIN_CLEARANCE_M + 0.05  # above the terrain mesh (not only the DEM), + anti z-fighting
DECK_THICKNESS_M = 1.0
BARRIER_HEIGHT_M = 1.1
BARRIER_WIDTH_M = 0.3
DEFAULT_DECK_M = 6.0
STATION_SPACING_M = 2.0

SPECS = (
    FieldSpec("id", "str", required=True),
    FieldSpec("name", "str"),
    FieldSpec("class", "str"),
    FieldSpec("width", "float"),
    FieldSpec("lanes", "int"),
    FieldSpec("bridge", "int"),
    FieldSpec("deck_height", "float"),
)


@dataclass
class RoadsResult:
    report: RunReport
    surfaces: SurfaceSet | None
    build: SurfaceBuild | None


# ------------------------------------------------------------------------------------ geometry
def road_buffers(lines: np.ndarray, widths: np.ndarray, node_snap: float = 0.1) -> np.ndarray:
    """Flat-capped buffers; ends shared with another road's end get a disc (closed corners)."""
    lines = np.asarray(lines, dtype=object)
    buffers = shapely.buffer(lines, np.asarray(widths) / 2, cap_style="flat", join_style="round")
    parts, owner = shapely.get_parts(lines, return_index=True)
    ends = np.vstack([shapely.get_coordinates(shapely.get_point(parts, 0)),
                      shapely.get_coordinates(shapely.get_point(parts, -1))])
    end_owner = np.concatenate([owner, owner])
    keys = np.round(ends / node_snap).astype(np.int64)
    _, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    shared = counts[inverse.ravel()] >= 2
    if shared.any():
        discs = shapely.buffer(shapely.points(ends[shared]), np.asarray(widths)[end_owner[shared]] / 2)
        order = np.argsort(end_owner[shared], kind="stable")
        o = end_owner[shared][order]
        starts = np.flatnonzero(np.r_[True, o[1:] != o[:-1]])
        stops = np.r_[starts[1:], len(o)]
        for s, e in zip(starts, stops, strict=True):
            i = o[s]
            buffers[i] = shapely.union_all([buffers[i], *discs[order[s:e]]])
    return buffers


def resolve_road_overlaps(buffers: np.ndarray, classes: np.ndarray, widths: np.ndarray,
                          ids: np.ndarray) -> np.ndarray:
    """Disjoint road polygons: higher class, then wider, then smaller id wins shared ground."""
    rank = np.array([CLASS_RANK.get(c, len(CLASSES)) for c in classes])
    order = np.lexsort((np.asarray(ids, dtype=str), -np.asarray(widths, float), rank))
    resolved_sorted = subtract_earlier(np.asarray(buffers, dtype=object)[order])
    out = np.empty(len(buffers), dtype=object)
    out[order] = resolved_sorted
    return out


def _stations(line: shapely.LineString, spacing: float) -> np.ndarray:
    length = line.length
    n = max(int(np.ceil(length / spacing)), 1)
    vertex_s = shapely.line_locate_point(line, shapely.points(shapely.get_coordinates(line)))
    return np.unique(np.concatenate([np.linspace(0.0, length, n + 1), vertex_s]))


def _sweep(xy: np.ndarray, left: np.ndarray, z: np.ndarray, tangent: np.ndarray,
           profile: np.ndarray, color: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sweep a closed CCW (offset, dz) profile along stations: (pts (V,3) x/y/h, tris, colours)."""
    S, P = len(xy), len(profile)
    pts, tris, cols = [], [], []
    base = 0
    for e in range(P):
        a, b = profile[e], profile[(e + 1) % P]
        strip = []
        for off, dz in (a, b):
            strip.append(np.column_stack([xy + left * off, z + dz]))
        v = np.vstack(strip)  # A stations then B stations
        i = np.arange(S - 1)
        t = np.vstack([np.column_stack([i, S + i, S + i + 1]), np.column_stack([i, S + i + 1, i + 1])])
        # orient outward: the edge's outward normal in (left, up) space is (dz, -doff) for a CCW profile
        do, dd = b[0] - a[0], b[1] - a[1]
        out_dir = np.column_stack([left[i] * dd, -np.full(len(i), do)])  # (S-1, 3)
        out_dir = np.vstack([out_dir, out_dir])
        fn = np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]])
        flip = np.einsum("ij,ij->i", fn, out_dir) < 0
        t[flip] = t[flip][:, [0, 2, 1]]
        pts.append(v)
        tris.append(t + base)
        cols.append(np.tile(color, (len(v), 1)))
        base += len(v)
    # end caps (profiles are convex quads)
    for k, sign in ((0, -1.0), (S - 1, 1.0)):
        cap = np.column_stack([xy[k] + np.outer(profile[:, 0], left[k]), z[k] + profile[:, 1]])
        t = np.array([[0, 1, 2], [0, 2, 3]])
        fn = np.cross(cap[t[:, 1]] - cap[t[:, 0]], cap[t[:, 2]] - cap[t[:, 0]])
        want = np.append(tangent[k] * sign, 0.0)
        flip = fn @ want < 0
        t[flip] = t[flip][:, [0, 2, 1]]
        pts.append(cap)
        tris.append(t + base)
        cols.append(np.tile(color, (4, 1)))
        base += 4
    return np.vstack(pts), np.vstack(tris), np.vstack(cols)


def bridge_mesh(line: shapely.Geometry, width: float, deck_height: float, dem: DemGrid,
                deck_color: np.ndarray, side_color: np.ndarray,
                barrier_color: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Deck slab + barriers along a bridge centreline: (x/y/orthometric h (V,3), tris, colours)."""
    if line.geom_type == "MultiLineString":
        merged = shapely.line_merge(line)
        line = merged if merged.geom_type == "LineString" else max(line.geoms, key=lambda g: g.length)
    s = _stations(line, STATION_SPACING_M)
    xy = shapely.get_coordinates(shapely.line_interpolate_point(line, s))
    tangent = np.gradient(xy, axis=0)
    tangent /= np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-12)
    left = np.column_stack([-tangent[:, 1], tangent[:, 0]])
    g = sample_heights(dem, xy[[0, -1], 0], xy[[0, -1], 1], clamp=True)
    g = np.nan_to_num(g, nan=0.0)
    top = g[0] + (g[1] - g[0]) * s / max(line.length, 1e-9) + deck_height
    w2 = width / 2
    deck = np.array([[-w2, -DECK_THICKNESS_M], [w2, -DECK_THICKNESS_M], [w2, 0.0], [-w2, 0.0]])
    bw, bh = BARRIER_WIDTH_M, BARRIER_HEIGHT_M
    right_barrier = np.array([[-w2, 0.0], [-w2 + bw, 0.0], [-w2 + bw, bh], [-w2, bh]])
    left_barrier = np.array([[w2 - bw, 0.0], [w2, 0.0], [w2, bh], [w2 - bw, bh]])
    parts = [_sweep(xy, left, top, tangent, deck, side_color),
             _sweep(xy, left, top, tangent, right_barrier, barrier_color),
             _sweep(xy, left, top, tangent, left_barrier, barrier_color)]
    # the deck's top strip (profile edge 2: (w2,0)→(-w2,0)) is the carriageway: road colour
    pts, tris, cols = [], [], []
    base = 0
    for k, (p, t, c) in enumerate(parts):
        if k == 0:
            S = len(xy)
            c = c.copy()
            c[2 * 2 * S:3 * 2 * S] = deck_color
        pts.append(p)
        tris.append(t + base)
        cols.append(c)
        base += len(p)
    return np.vstack(pts), np.vstack(tris), np.vstack(cols)


# ------------------------------------------------------------------------------------ pipeline
def prepare_roads(src_path: Path, dem: DemGrid, *, boundary: shapely.Geometry | None,
                  mapping: FieldMapping | None = None, src_crs: str | None = None,
                  encoding: str | None = None, layer: str | None = None) -> tuple[SurfaceSet | None,
                                                                                          RunReport]:
    """Read, check and turn roads into disjoint surfaces + bridge meshes (no files written)."""
    src = read_layer(src_path, SPECS, layer_name="roads", mapping=mapping, src_crs=src_crs,
                     encoding=encoding, layer=layer)
    return roads_from_layer(src, dem, boundary)


def roads_from_layer(src: SourceLayer, dem: DemGrid, boundary: shapely.Geometry | None,
                     after_clean: Callable[[RunReport, np.ndarray], None] | None = None
                     ) -> tuple[SurfaceSet | None, RunReport]:
    """The checks and surfaces of :func:`prepare_roads` on a layer already read (a partition's, with
    the roads around it: ``after_clean`` runs right after the geometry rules)."""
    report = src.report
    geoms = check_features(src, "line", compare=["name", "class", "width", "lanes", "bridge", "deck_height"],
                           boundary=boundary)
    if after_clean is not None:
        after_clean(report, geoms)
    alive = ~shapely.is_missing(geoms) & ~report.rejected_mask()
    cls = np.array([(c or "").strip().lower() for c in text_column(src, "class")], dtype=object)
    unknown = alive & ~np.isin(cls, CLASSES)
    if unknown.any():
        rows = np.flatnonzero(unknown)
        report.repair(rows, "unknown_class",
                      [f"class {cls[r]!r} unknown: drawn as residential" for r in rows],
                      field="class", value=[cls[r] for r in rows])
        cls[unknown] = "residential"
    width = numeric_column(src, "width")
    bad_w = alive & np.isfinite(width) & ((width <= 0) | (width > 100))
    if bad_w.any():
        rows = np.flatnonzero(bad_w)
        report.reject(rows, "absurd_value", [f"width {width[r]:g} m not in (0, 100]" for r in rows],
                      field="width", value=[width[r] for r in rows])
    alive &= ~bad_w
    no_w = alive & ~np.isfinite(width)
    if no_w.any():
        rows = np.flatnonzero(no_w)
        report.repair(rows, "default_width",
                      [f"no width: {DEFAULT_WIDTH[cls[r]]:g} m for {cls[r]}" for r in rows],
                      field="width")
        width[no_w] = [DEFAULT_WIDTH[cls[r]] for r in rows]
    bridge = np.nan_to_num(numeric_column(src, "bridge"), nan=0.0) > 0
    deck = numeric_column(src, "deck_height")
    bad_deck = alive & bridge & np.isfinite(deck) & ((deck < 0) | (deck > 60))
    if bad_deck.any():
        rows = np.flatnonzero(bad_deck)
        report.reject(rows, "absurd_value", [f"deck_height {deck[r]:g} m not in [0, 60]" for r in rows],
                      field="deck_height", value=[deck[r] for r in rows])
    alive &= ~bad_deck
    no_deck = alive & bridge & ~np.isfinite(deck)
    if no_deck.any():
        report.repair(no_deck, "default_deck_height", f"bridge without deck_height: {DEFAULT_DECK_M:g} m",
                      field="deck_height")
        deck[no_deck] = DEFAULT_DECK_M

    rows = np.flatnonzero(alive)
    if len(rows) == 0:
        report.mark_written(rows)
        return None, report
    lines = geoms[rows]
    is_bridge = bridge[rows]
    ids = np.array([str(report.ids[r]) for r in rows], dtype=object)
    polygons = np.empty(len(rows), dtype=object)
    ground = np.flatnonzero(~is_bridge)
    buffers = road_buffers(lines, width[rows])
    polygons[ground] = resolve_road_overlaps(buffers[ground], cls[rows][ground], width[rows][ground],
                                             ids[ground])
    polygons[np.flatnonzero(is_bridge)] = None
    # a ground road wholly under higher-ranked roads would draw nothing: rejected, not counted written
    covered = ~is_bridge & np.array([p is None or shapely.is_empty(p) or shapely.area(p) < 1e-6
                                     for p in polygons], dtype=bool)
    if covered.any():
        report.reject(rows[covered], "covered",
                      [f"wholly covered by higher-ranked roads ({cls[r]}, {width[r]:g} m wide): nothing to draw"
                       for r in rows[covered]])
    report.mark_written(rows[~covered])
    colors = np.array([color_u8(CLASS_COLORS[c]) for c in cls[rows]])
    bridge_idx = np.flatnonzero(is_bridge)
    mid = shapely.line_interpolate_point(lines[bridge_idx], 0.5, normalized=True)
    extra_xy = {int(i): xy for i, xy in zip(bridge_idx, shapely.get_coordinates(mid), strict=True)}
    side, barrier = color_u8("#b9b4aa"), color_u8("#d5d5d2")
    w_rows, d_rows = width[rows], deck[rows]

    def build_bridges(frame: EnuFrame) -> dict[int, ExtraMesh]:
        out: dict[int, ExtraMesh] = {}
        for i in bridge_idx.tolist():
            p, t, c = bridge_mesh(lines[i], float(w_rows[i]), float(d_rows[i]), dem, colors[i], side, barrier)
            enu = to_enu(frame, p[:, 0], p[:, 1], p[:, 2])
            out[i] = (enu, vertex_normals(enu, t), t, c)
        return out

    lanes = numeric_column(src, "lanes")[rows]
    s = SurfaceSet(
        polygons=polygons, lift=np.full(len(rows), ROAD_LIFT_M), flat_level=np.full(len(rows), np.nan),
        colors=colors, lod_rank=np.array([CLASS_LOD[c] for c in cls[rows]]), size=w_rows.copy(),
        columns={
            "id": PropertyColumn(ids.tolist(), "STRING", required=True),
            "name": PropertyColumn(text_column(src, "name")[rows].tolist(), "STRING"),
            "class": PropertyColumn(cls[rows].tolist(), "STRING", required=True),
            "width": PropertyColumn(w_rows.astype(np.float32), "FLOAT32", description="carriageway (m)"),
            "lanes": PropertyColumn(np.where(np.isfinite(lanes), lanes, 255).astype(np.uint8), "UINT8",
                                    no_data=255),
            "bridge": PropertyColumn(is_bridge.astype(np.uint8), "UINT8", required=True),
            "deck_height": PropertyColumn(np.where(is_bridge, d_rows, -9999.0).astype(np.float32), "FLOAT32",
                                          no_data=-9999.0, description="m above ground at the ends"),
        },
        rows=rows, extra_xy=extra_xy, extra_builder=build_bridges,
        extra_columns={"line": np.array([shapely.to_wkb(lines[i]) if is_bridge[i] else None
                                         for i in range(len(rows))], dtype=object),
                       "width": w_rows.astype(float), "deck": np.asarray(d_rows, float)},
    )
    return s, report


@dataclass
class RoadOptions:
    """Options of :func:`build_roads` (``onemap tiles roads``)."""

    dem: Path | None = None  # orthometric DEM to drape on (flat 0 m without)
    boundary: Path | None = None  # district polygon (default: boundary.gpkg beside SRC)
    mapping: FieldMapping | Path | None = None  # field mapping, or its YAML path
    src_crs: str | None = None
    encoding: str | None = None  # of a Shapefile without .cpg / a CSV
    layer: str | None = None  # of a multi-layer file
    geoid: str | None = None
    dry_run: bool = False  # read, check and report; publish nothing (the report goes to OUT)
    keep_leaf_geometry: bool = False
    # spatial partitions (docs/scale.md): level (None = from the feature count, 0 = one piece),
    # target roads per partition, Dask scheduler (None = ONEMAP_DASK_SCHEDULER, else in-process)
    partition_level: int | None = None
    partition_features: int = 1_000
    dask: str | None = None


def build_roads(src: Path, out: Path, options: RoadOptions | None = None,
                progress: Progress | None = None) -> RoadsResult:
    """The ``onemap tiles roads`` pipeline: stages the tileset and the report in ``OUT.tmp-<pid>``
    and publishes them atomically once validated (a dry run writes only the report). Many roads
    run in spatial partitions (:mod:`pipelines.layer_partitions`), in-process or on Dask."""
    from pipelines.layer_partitions import plan_layer

    o = options or RoadOptions()
    plan = plan_layer("roads", src, o)
    if plan is not None:
        from pipelines.layer_scale import build_layer_partitioned

        return RoadsResult(build_layer_partitioned(plan, Path(src), Path(out), o, progress), None, None)
    return _build_whole(src, out, o, progress)


@in_run_frame
def _build_whole(src: Path, out: Path, options: RoadOptions, progress: Progress | None) -> RoadsResult:
    o = options
    src, out = Path(src), Path(out)
    staging = None if o.dry_run else Staging(out)
    try:
        say(progress, "read", 0, 1)
        dem, boundary, mapping = resolve_inputs(src, o.dem, o.boundary, o.mapping)
        surfaces, report = prepare_roads(src, dem, boundary=boundary, mapping=mapping, src_crs=o.src_crs,
                                     encoding=o.encoding, layer=o.layer)
        say(progress, "read", 1, 1)
        if o.dem is None:
            report.note("no DEM given: roads drawn at 0 m orthometric")
        if boundary is None:
            report.note("no boundary.gpkg found or given: outside_boundary not checked")
        report.finalize()
        build = None
        if surfaces is not None:
            report.output["bridges"] = len(surfaces.extra_xy)
            report.output["road_area_m2"] = round(float(np.sum(shapely.area(
                np.array([p for p in surfaces.polygons if p is not None], dtype=object)))), 1)
        if staging is not None and surfaces is not None:
            build = build_surface_tileset(surfaces, staging.tmp, dem, class_name="road", grid=False,
                                          leaf_cell=4.0, max_pieces=400, description="road surfaces and bridges",
                                          progress=for_stage(progress, "roads"),
                                          keep_leaf_geometry=o.keep_leaf_geometry)
            report.output.update(build.summary())
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
    return RoadsResult(report, surfaces, build)


# ------------------------------------------------------------------------------------ partitions
# the widest road (100 m) reaches 50 m beyond its centreline, and so does a road cutting it: the
# roads that can cut a road, or draw in a cell, have their centreline within 100 m of it
MARGIN_M = 101.0


def _partition_prepare(src: SourceLayer, dem: DemGrid, boundary: shapely.Geometry | None,
                       after_clean: Callable[[RunReport, np.ndarray], None], owned: np.ndarray
                       ) -> tuple[SurfaceSet | None, RunReport, np.ndarray, dict[str, Any]]:
    s, report = roads_from_layer(src, dem, boundary, after_clean)
    if s is None:
        return None, report, np.zeros(0, np.int64), {}
    rejected = np.fromiter(report.rejected.keys(), np.int64, len(report.rejected))
    written = s.rows[~np.isin(s.rows, rejected)]
    mine = owned[s.rows] & ~np.isin(s.rows, rejected)
    polys = np.array([p for p, m in zip(s.polygons, mine, strict=True) if m and p is not None], dtype=object)
    bridges = int(sum(1 for i in s.extra_xy if mine[i]))
    return s, report, written, {"bridges": bridges, "road_area_m2": float(np.sum(shapely.area(polys)))}


def _bridge_extras(s: SurfaceSet, dem: DemGrid) -> None:
    """The bridge meshes of ``s`` from its ``extra_columns`` (a partition's or a parent's set)."""
    lines = s.extra_columns.get("line", np.zeros(0, dtype=object))
    idx = [i for i in sorted(s.extra_xy) if lines[i] is not None]
    side, barrier = color_u8("#b9b4aa"), color_u8("#d5d5d2")
    width, deck, colors = s.extra_columns.get("width"), s.extra_columns.get("deck"), s.colors

    def build(frame: EnuFrame) -> dict[int, ExtraMesh]:  # holds no reference to s (no cycle)
        out: dict[int, ExtraMesh] = {}
        for i in idx:
            p, t, c = bridge_mesh(shapely.from_wkb(lines[i]), float(width[i]), float(deck[i]), dem, colors[i],
                                  side, barrier)
            enu = to_enu(frame, p[:, 0], p[:, 1], p[:, 2])
            out[i] = (enu, vertex_normals(enu, t), t, c)
        return out

    s.extra_builder = build


def _partition_finish(report: RunReport, stats: dict[str, Any]) -> None:
    report.output["bridges"] = int(stats.get("bridges", 0))
    report.output["road_area_m2"] = round(float(stats.get("road_area_m2", 0.0)), 1)


PARTITION_WORKER = LayerWorker(
    name="roads", kind="surfaces", specs=SPECS, prepare=_partition_prepare, margin_m=MARGIN_M,
    extras=_bridge_extras, finish=_partition_finish,
    build_kw={"class_name": "road", "grid": False, "leaf_cell": 4.0, "max_pieces": 400,
              "description": "road surfaces and bridges"})
