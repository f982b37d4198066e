"""Buildings → glb tiles: colours, the per-building property table and the tile encoder jobs.

A tile's mesh is either roof facets + walls (:mod:`tiles.building_mesh`, footprint deliveries)
or, in the leaves of a CityJSON delivery, the real roof/wall/ground surfaces
(:mod:`tiles.surface_mesh`). Jobs run in forked workers sharing one :class:`EncoderState`.
"""

from __future__ import annotations

import gzip
import multiprocessing
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import shapely
from pyproj import CRS

from core.frames import EnuFrame, enu_to_gltf, projected_orthometric_to_enu
from tiles import building_mesh as bm
from tiles.gltf import FeatureTable, MeshData, PropertyColumn, encode_mesh_glb
from tiles.surface_mesh import SurfaceSet, surfaces_to_mesh
from tiles.tileset import box_from_points

if TYPE_CHECKING:
    from pipelines.buildings import PreparedBuildings

USE_COLORS: dict[str, tuple[int, int, int]] = {
    "residential": (232, 220, 196),
    "commercial": (125, 172, 222),
    "office": (152, 172, 194),
    "school": (242, 196, 96),
    "hospital": (246, 206, 206),
    "market": (232, 146, 78),
    "public": (164, 204, 152),
    "industrial": (172, 168, 162),
    "courtyard_house": (196, 176, 154),
}
DEFAULT_COLOR = (205, 205, 205)
PITCHED_ROOF_COLOR = (156, 74, 58)
COURTYARD_ROOF_COLOR = (88, 88, 98)

_NAME_RE = re.compile(r"[^A-Za-z0-9_]")


def property_name(name: str, taken: set[str]) -> str:
    """A metadata property identifier for a source attribute name (unique among ``taken``)."""
    base = _NAME_RE.sub("_", str(name)).strip("_") or "attribute"
    if base[0].isdigit():
        base = "a_" + base
    out, k = base, 2
    while out in taken:
        out, k = f"{base}_{k}", k + 1
    taken.add(out)
    return out


def extra_columns(b: PreparedBuildings, content: np.ndarray) -> dict[str, PropertyColumn]:
    """The delivery's own attributes (e.g. CityJSON ``attributes``) as metadata properties:
    numbers as FLOAT64 (no data NaN → -9999), everything else as strings."""
    out: dict[str, PropertyColumn] = {}
    for name, values in (getattr(b, "extra", None) or {}).items():
        v = values[content]
        if v.dtype.kind == "f":
            out[name] = PropertyColumn(np.where(np.isfinite(v), v, -9999.0), "FLOAT64", no_data=-9999.0)
        else:
            out[name] = PropertyColumn(np.array(["" if x is None else str(x) for x in v], dtype=object),
                                       "STRING", no_data="")
    return out


def _lookup(values: np.ndarray, table: dict[str, tuple[int, int, int]],
            default: tuple[int, int, int]) -> np.ndarray:
    codes, uniques = pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=False)
    palette = np.array([table.get(u, default) for u in uniques], dtype=np.float64).reshape(-1, 3)
    return palette[codes]


def building_colors(b: PreparedBuildings, lod2: bool) -> tuple[np.ndarray, np.ndarray]:
    """(wall, roof) linear RGB 0..255 per building: walls by use, flat roofs darker, pitched tiles."""
    wall = _lookup(b.uses, USE_COLORS, DEFAULT_COLOR)
    roof = wall * 0.82
    if lod2:
        pitched = b.roof != bm.ROOF_FLAT
        roof[pitched] = PITCHED_ROOF_COLOR
        roof[pitched & (b.uses == "courtyard_house")] = COURTYARD_ROOF_COLOR
    return wall, roof


def _vertex_colors(mesh: bm.MeshArrays, wall: np.ndarray, roof: np.ndarray) -> np.ndarray:
    """Per-vertex RGBA from per-building (content-local) wall and roof colours."""
    rgb = np.where(mesh.is_roof[:, None], roof[mesh.building], wall[mesh.building])
    out = np.empty((mesh.n_vertices, 4), np.uint8)
    out[:, :3] = np.clip(np.round(rgb), 0, 255)
    out[:, 3] = 255
    return out


def feature_table(b: PreparedBuildings, content: np.ndarray) -> FeatureTable:
    a = b.take(content)
    return FeatureTable("building", {
        "id": PropertyColumn(a["ids"], "STRING", required=True,
                             description="stable building id (PostGIS key)"),
        "name": PropertyColumn(a["names"], "STRING", no_data=""),
        "floors": PropertyColumn(a["floors"], "UINT16", no_data=0),
        "height": PropertyColumn(a["height"], "FLOAT32", required=True, description="metres above base"),
        "use": PropertyColumn(a["uses"], "STRING", no_data=""),
        "community": PropertyColumn(a["communities"], "STRING", no_data=""),
        "roof_type": PropertyColumn(a["roof_names"], "STRING", required=True),
        **extra_columns(b, content),
        "ground_height": PropertyColumn(a["base"], "FLOAT32", required=True,
                                        description="orthometric base (lowest ground under the footprint)"),
    }, schema_id="onemap_buildings", class_description="A building footprint extruded (LOD1/LOD2)")


def encode_tile(b: PreparedBuildings, content: np.ndarray, facets: bm.Facets, footprints: np.ndarray,
                to_enu: bm.ToEnu, lod2: bool,
                colors: tuple[np.ndarray, np.ndarray] | None = None,
                surfaces: SurfaceSet | None = None,
                surfaces_to_enu: bm.ToEnu | None = None, *, compress: str = "none",
                sizes: dict[str, int] | None = None) -> tuple[bytes, np.ndarray]:
    """glb bytes and ENU vertices of one tile (``facets``/``surfaces`` numbered by position in
    ``content``). With ``surfaces`` (real roof/wall polygons, e.g. CityJSON) those are meshed as
    they are, through ``surfaces_to_enu`` (their own CRS → ENU), instead of roofs from facets.
    ``compress="draco"`` writes KHR_draco_mesh_compression; ``sizes`` then receives ``raw_bytes``,
    the size of the same tile uncompressed (for the report)."""
    if surfaces is not None:
        mesh = surfaces_to_mesh(surfaces, surfaces_to_enu or to_enu)
    else:
        mesh = bm.facets_to_mesh(facets, footprints, b.base[content], to_enu)
    wall, roof = colors if colors is not None else building_colors(b, lod2)
    data = MeshData(
        positions=enu_to_gltf(mesh.positions).astype(np.float32),
        indices=mesh.indices,
        normals=enu_to_gltf(mesh.normals.astype(np.float64)).astype(np.float32),
        colors=_vertex_colors(mesh, wall[content], roof[content]),
        feature_ids=mesh.building,
    )
    table = feature_table(b, content)
    glb = encode_mesh_glb(data, table, quantize_normals=True, compress=compress)
    if sizes is not None:
        sizes["raw_bytes"] = len(glb) if compress == "none" else len(
            encode_mesh_glb(data, table, quantize_normals=True))
    return glb, (mesh.outline if mesh.outline is not None else mesh.positions)


def size_report(tiles: Iterable[dict[str, Any]], buildings: int, compress: str) -> dict[str, Any]:
    """The build report's compression figures: bytes per building as written and uncompressed."""
    tiles = list(tiles)
    written = sum(int(t["bytes"]) for t in tiles)
    raw = sum(int(t.get("raw_bytes", t["bytes"])) for t in tiles)
    per = max(1, buildings)
    return {"compress": compress, "raw_bytes": raw, "bytes_per_building": round(written / per, 1),
            "raw_bytes_per_building": round(raw / per, 1)}


def tile_fingerprint(b: PreparedBuildings, wkb: np.ndarray, rows: np.ndarray) -> list[bytes | str]:
    """Everything the tiles of buildings ``rows`` depend on, as digest parts."""
    parts: list[bytes | str] = [b"".join(wkb[rows])]
    for col in (b.ids, b.names, b.uses, b.communities):
        parts.append("\x1e".join(map(str, col[rows])))
    for arr in (b.floors, b.height, b.base, b.roof):
        parts.append(np.ascontiguousarray(arr[rows]).tobytes())
    return parts


@dataclass
class TileJob:
    """One tile to encode: its quadtree key, content building indices and subtree indices."""

    key: str
    leaf: bool
    content: np.ndarray
    subtree: np.ndarray
    depth_below: int

    @property
    def uri(self) -> str:
        return f"tiles/{self.key}.glb"


@dataclass
class EncoderState:
    b: PreparedBuildings
    facets: bm.Facets
    roof_drop: np.ndarray
    frame: EnuFrame
    lod2: bool
    out_dir: Path
    gzip_level: int
    colors_lod1: tuple[np.ndarray, np.ndarray]
    colors_lod2: tuple[np.ndarray, np.ndarray]
    surfaces: SurfaceSet | None = None  # real surfaces for the leaves (CityJSON), in surfaces_crs
    surfaces_crs: CRS | None = None
    compress: str = "none"  # tiles.gltf.COMPRESSIONS


_STATE: EncoderState | None = None  # set in the parent before forking workers


def _worker_init() -> None:
    from core import frames

    # PROJ objects are not fork-safe: rebuild them in each worker.
    for fn in (frames._to_lonlat, frames._geoid_transformer, frames._lonlath_to_ecef,
               frames._ecef_to_lonlath):
        fn.cache_clear()


def _encode_job(job: TileJob) -> dict[str, Any]:
    st = _STATE
    assert st is not None
    b = st.b
    to_enu = projected_orthometric_to_enu(st.frame, b.working_crs, geoid_cell_m=50.0)
    content = job.content
    renumber = np.full(len(b), -1, np.int64)
    renumber[content] = np.arange(len(content))
    if job.leaf:
        facets = st.facets.select(content, renumber)
        footprints = b.footprints[content]
        error = 0.0
    else:
        tol = min(0.5 * 2 ** (job.depth_below - 1), 4.0)
        footprints = shapely.simplify(b.footprints[content], tol, preserve_topology=True)
        hd = bm.footprint_deviation(footprints, b.footprints[content])
        facets = bm.lod1_facets(footprints, b.base[content] + b.height[content])
        kept_err = float(np.max(np.hypot(hd, st.roof_drop[content]))) if len(content) else 0.0
        omitted = np.setdiff1d(job.subtree, content, assume_unique=True)
        omit_err = float(b.height[omitted].max()) if len(omitted) else 0.0
        error = max(kept_err, omit_err)
    lod2 = st.lod2 and job.leaf
    surfaces = surfaces_to_enu = None
    if job.leaf and st.surfaces is not None:
        surfaces = st.surfaces.select(content, renumber)
        surfaces_to_enu = projected_orthometric_to_enu(st.frame, st.surfaces_crs or b.working_crs,
                                                       geoid_cell_m=50.0)
    sizes: dict[str, int] = {}
    glb, verts = encode_tile(b, content, facets, footprints, to_enu, lod2,
                             st.colors_lod2 if lod2 else st.colors_lod1, surfaces, surfaces_to_enu,
                             compress=st.compress, sizes=sizes)
    path = st.out_dir / job.uri
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(glb)
    return {"key": job.key, "content_box": box_from_points(verts).to_json(), "error": error,
            "bytes": len(glb), "gzip_bytes": len(gzip.compress(glb, st.gzip_level)), **sizes}


def run_jobs(state: EncoderState, jobs: list[TileJob], workers: int,
             say: Callable[[str, int, int], None]) -> dict[str, dict]:
    """Encode ``jobs`` (forked workers share ``state``); returns each tile's box, error and sizes."""
    global _STATE
    _STATE = state
    try:
        return _run_jobs(jobs, workers, say)
    finally:
        _STATE = None


def _run_jobs(jobs: list[TileJob], workers: int, say: Callable[[str, int, int], None]) -> dict[str, dict]:
    done: dict[str, dict] = {}
    total = len(jobs)
    if workers <= 1 or total <= 1:
        _worker_init()
        for i, job in enumerate(jobs):
            done[job.key] = _encode_job(job)
            say("tiles", i + 1, total)
        return done
    ctx = multiprocessing.get_context("fork")
    # big tiles first so the pool stays busy to the end
    order = sorted(jobs, key=lambda j: -len(j.content))
    with ctx.Pool(workers, initializer=_worker_init) as pool:
        for i, res in enumerate(pool.imap_unordered(_encode_job, order, chunksize=1)):
            done[res["key"]] = res
            say("tiles", i + 1, total)
    return done


# ------------------------------------------------------------------------------------ build
