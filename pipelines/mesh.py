"""`onemap tiles mesh SRC --out DIR`: reality meshes (oblique photogrammetry, 倾斜摄影) -> 3D Tiles 1.1.

SRC is a ContextCapture / DJI Terra OBJ export folder (metadata.xml + Data/Tile_*/) or one
OBJ/PLY/glTF file with ``src_crs`` and ``origin`` (pipelines/mesh_sources.py).

* Placement: every vertex goes source CRS (orthometric z) -> lon/lat -> + geoid N -> ECEF
  (core.frames), then into one ENU frame at the data's centre; the root tile's ``transform``
  carries ENU -> ECEF, glb positions are float32 in that frame (sub-millimetre at 1 km).
* Hierarchy: a quadtree over the leaves (export tiles, or ``leaf_size`` cells of a single
  file). A level-L node's content is its children's content merged and simplified to
  ``ratio`` of their triangles (quadric edge collapse, fast-simplification, per material) with
  textures halved; UVs are re-interpolated on the original surface.
* geometricError: leaves 0; a node's is the MEASURED error of its content: an upper bound of
  the two-way distance between the original surface under it and its simplified surface, every
  point of both surfaces covered, not only vertices (tiles/mesh_lod.py measured_error), made
  monotonic.
* Incremental: a leaf's hash covers its files' bytes and the options, a node's its children's
  hashes; unchanged tiles are hard-linked from the previous output. Published atomically
  through pipelines/publish.py (validated first). OUT/report.json has counts and sizes.
* Compression: ``compress="draco"`` writes every primitive (POSITION, TEXCOORD_0 or COLOR_0,
  indices) with KHR_draco_mesh_compression (tiles/mesh_glb.py); the report gives the leaves'
  bytes per triangle as written and their geometry bytes per triangle with and without Draco.
"""

from __future__ import annotations

import gzip
import logging
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from core.errors import InputError
from core.frames import (
    EnuFrame,
    active_geoid,
    geoid_undulation,
    projected_orthometric_to_ecef,
    projected_to_lonlat,
    using_geoid,
)
from pipelines.mesh_sources import MeshSource, Part, parse_origin, read_source
from pipelines.progress import Progress, report
from pipelines.publish import Staging, digest, read_manifest, write_manifest
from tiles.mesh_glb import encode_parts_glb
from tiles.mesh_lod import LodMesh, downsample_image, measured_error, simplify_together
from tiles.tileset import OrientedBox, Tile, Tileset, box_enclosing, box_from_points, enforce_monotonic_errors

log = logging.getLogger(__name__)
PIPELINE_VERSION = "mesh-2"  # 2: geometricError bounds the surfaces, not only vertices
COMPRESSIONS = ("none", "draco")
MIN_ERROR_M = 0.01


@dataclass
class MeshOptions:
    """Options of :func:`build_mesh`."""

    src_crs: str | None = None  # single files only: their CRS (projected, metres)
    origin: str | tuple[float, float, float] | None = None  # single files: "X,Y,Z" added to vertices
    leaf_size: float = 100.0  # single files: leaf cell size, metres
    ratio: float = 0.25  # triangles kept per level up the tree
    jpeg_quality: int = 85
    geoid: Any = None
    compress: str = "none"  # or "draco" (KHR_draco_mesh_compression)


@dataclass
class MeshResult:
    out: Path
    leaves: int = 0
    tiles: int = 0
    tiles_reused: int = 0
    levels: int = 0
    triangles_in: int = 0
    vertices_in: int = 0
    triangles_out: dict[int, int] = field(default_factory=dict)
    errors_m: dict[int, float] = field(default_factory=dict)
    bytes: int = 0
    gzip_bytes: int = 0
    texture_bytes: int = 0
    compress: str = "none"
    leaf_geometry_bytes: int = 0  # the leaves' binary geometry as written (Draco streams or accessors)
    leaf_plain_geometry_bytes: int = 0  # the same geometry as plain accessors
    seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"leaves": self.leaves, "tiles": self.tiles, "tiles_reused": self.tiles_reused, "levels": self.levels,
                "triangles_in": self.triangles_in, "vertices_in": self.vertices_in,
                "triangles_out_per_level": {str(k): v for k, v in sorted(self.triangles_out.items())},
                "geometric_error_m_per_level": {str(k): round(v, 4) for k, v in sorted(self.errors_m.items())},
                "bytes": self.bytes, "gzip_bytes": self.gzip_bytes,
                "bytes_per_triangle_leaves": round(self.bytes_leaves_per_triangle(), 2),
                "compress": self.compress,
                "geometry_bytes_per_triangle_leaves": round(self.leaf_geometry_bytes / self._leaf_tris, 2),
                "plain_geometry_bytes_per_triangle_leaves": round(self.leaf_plain_geometry_bytes / self._leaf_tris,
                                                                  2),
                "seconds": round(self.seconds, 2), "stages": self.stages}

    def bytes_leaves_per_triangle(self) -> float:
        """Bytes of the leaf tiles (textures included) per leaf triangle."""
        return self._leaf_bytes / self._leaf_tris

    def geometry_bytes_per_triangle(self, plain: bool = False) -> float:
        """The leaves' binary geometry per triangle, as written or (``plain``) uncompressed."""
        return (self.leaf_plain_geometry_bytes if plain else self.leaf_geometry_bytes) / self._leaf_tris

    @property
    def _leaf_tris(self) -> int:
        return max(1, self.triangles_out.get(0, 0))

    _leaf_bytes: int = 0

    def summary(self) -> str:
        return (f"mesh: {self.triangles_in:,} triangles in {self.leaves} leaves -> {self.tiles} tiles "
                f"({self.tiles_reused} reused), {self.levels + 1} levels, {self.bytes / 1e6:.1f} MB "
                f"in {self.seconds:.1f} s -> {self.out}")


def _to_enu(src: MeshSource, frame: EnuFrame) -> dict[tuple[int, int], list[LodMesh]]:
    out: dict[tuple[int, int], list[LodMesh]] = {}
    for key, parts in src.leaves.items():
        meshes = []
        for p in parts:
            ecef = projected_orthometric_to_ecef(p.positions[:, 0], p.positions[:, 1], p.positions[:, 2], src.crs)
            meshes.append(LodMesh(frame.ecef_to_enu(ecef), p.faces, p.uv, p.image, p.colors, p.color, p.name))
        out[key] = meshes
    return out


def _frame(src: MeshSource) -> EnuFrame:
    allp = np.vstack([p.positions for parts in src.leaves.values() for p in parts])
    lo, hi = allp.min(axis=0), allp.max(axis=0)
    cx, cy = 0.5 * (lo[0] + hi[0]), 0.5 * (lo[1] + hi[1])
    lon, lat = projected_to_lonlat(np.array([cx]), np.array([cy]), src.crs)
    h = round(float(np.median(allp[:, 2])), 0) + float(geoid_undulation(lon, lat)[0])
    return EnuFrame.at_lonlat(float(lon[0]), float(lat[0]), h)


@dataclass
class _Node:
    level: int
    x: int
    y: int
    children: list[_Node] = field(default_factory=list)
    leaves: list[tuple[int, int]] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.level}/{self.x}_{self.y}"

    @property
    def uri(self) -> str:
        return f"tiles/{self.level}/{self.x}_{self.y}.glb"


def _tree(keys: list[tuple[int, int]]) -> tuple[_Node, int]:
    i0 = min(k[0] for k in keys)
    j0 = min(k[1] for k in keys)
    span = max(max(k[0] for k in keys) - i0, max(k[1] for k in keys) - j0) + 1
    depth = max(1, math.ceil(math.log2(span))) if span > 1 else 1
    nodes: dict[tuple[int, int, int], _Node] = {}
    for k in sorted(keys):
        leaf = _Node(0, k[0] - i0, k[1] - j0, leaves=[k])
        nodes[(0, leaf.x, leaf.y)] = leaf
    for level in range(1, depth + 1):
        for (lv, x, y), node in sorted(nodes.items()):
            if lv != level - 1:
                continue
            pk = (level, x >> 1, y >> 1)
            parent = nodes.setdefault(pk, _Node(level, x >> 1, y >> 1))
            parent.children.append(node)
            parent.leaves.extend(node.leaves)
    return nodes[(depth, 0, 0)], depth


def build_mesh(src: Path | str, out: Path | str, options: MeshOptions | None = None,
               progress: Progress | None = None) -> MeshResult:
    """Read, place, simplify, tile, validate and publish a reality mesh; returns the report."""
    options = options or MeshOptions()
    if options.compress not in COMPRESSIONS:
        raise InputError(f"--compress {options.compress!r}: use one of {', '.join(COMPRESSIONS)}")
    with using_geoid(options.geoid):
        return _build(Path(src), Path(out), options, progress)


def _build(src_path: Path, out: Path, options: MeshOptions, progress: Progress | None) -> MeshResult:
    t0 = tick = time.perf_counter()
    res = MeshResult(out=out, compress=options.compress)

    def stage(name: str) -> None:
        nonlocal tick
        now = time.perf_counter()
        res.stages[name] = round(now - tick, 3)
        tick = now

    report(progress, "read", 0, 1)
    origin = options.origin if isinstance(options.origin, tuple) else parse_origin(options.origin)
    src = read_source(src_path, options.src_crs, origin, options.leaf_size)
    res.leaves, res.triangles_in, res.vertices_in = len(src.leaves), src.triangles, src.vertices
    frame = _frame(src)
    leaves = _to_enu(src, frame)
    report(progress, "read", 1, 1)
    stage("read")

    root, depth = _tree(list(leaves))
    res.levels = depth
    settings = digest([PIPELINE_VERSION, repr(options.ratio), str(options.jpeg_quality), options.compress,
                       src.crs.to_wkt(),
                       repr(frame.origin_ecef), repr(active_geoid()), repr(origin), repr(options.leaf_size)])
    old = read_manifest(out)
    old_tiles = old.get("tiles", {}) if old.get("settings") == settings else {}
    hashes: dict[str, str] = {}

    def hash_of(node: _Node) -> str:
        if node.key not in hashes:
            parts = [settings, node.key]
            if node.level == 0:
                parts.append(src.fingerprints[node.leaves[0]])
            else:
                parts += [hash_of(c) for c in sorted(node.children, key=lambda c: c.key)]
            hashes[node.key] = digest(parts)
        return hashes[node.key]

    contents: dict[str, list[LodMesh]] = {}

    def content(node: _Node) -> list[LodMesh]:
        if node.key in contents:
            return contents[node.key]
        if node.level == 0:
            meshes = leaves[node.leaves[0]]
        else:
            below = [m for child in sorted(node.children, key=lambda c: c.key) for m in content(child)]
            # one simplification over all parts: the quadric cost decides where triangles go
            meshes = [replace(s, image=downsample_image(s.image, 2))
                      for s in simplify_together(below, options.ratio)]
        contents[node.key] = meshes
        return meshes

    nodes = _post_order(root)
    total = len(nodes)
    staging = Staging(out)
    try:
        manifest_tiles: dict[str, Any] = {}
        tiles_of: dict[str, Tile] = {}
        for n_done, node in enumerate(nodes):
            h = hash_of(node)
            prev = old_tiles.get(node.key)
            if prev and prev.get("hash") == h and staging.reuse(node.uri):
                info = prev
                res.tiles_reused += 1
            else:
                meshes = content(node)
                sizes: dict[str, int] = {}
                glb = encode_parts_glb(meshes, quality=options.jpeg_quality, compress=options.compress,
                                       sizes=sizes)
                staging.write_bytes(node.uri, glb)
                pts = np.vstack([m.positions for m in meshes])
                err = 0.0
                if node.level > 0:
                    orig = [m for k in node.leaves for m in leaves[k]]
                    err = measured_error(np.vstack([m.positions for m in orig]), meshes, orig)
                box = box_from_points(pts, pad=0.01)
                info = {"hash": h, "error": max(err, MIN_ERROR_M) if node.level else 0.0, "box": box.to_json(),
                        "triangles": int(sum(m.n_triangles for m in meshes)), "bytes": len(glb),
                        "gzip_bytes": len(gzip.compress(glb, 6)), **sizes,
                        "texture_px": int(sum(m.image.shape[0] * m.image.shape[1] for m in meshes
                                              if m.image is not None))}
            manifest_tiles[node.key] = {**info, "uri": node.uri}
            res.triangles_out[node.level] = res.triangles_out.get(node.level, 0) + int(info["triangles"])
            res.errors_m[node.level] = max(res.errors_m.get(node.level, 0.0), float(info["error"]))
            res.bytes += int(info["bytes"])
            res.gzip_bytes += int(info["gzip_bytes"])
            if node.level == 0:
                res._leaf_bytes += int(info["bytes"])
                res.leaf_geometry_bytes += int(info.get("geometry_bytes", 0))
                res.leaf_plain_geometry_bytes += int(info.get("plain_geometry_bytes", 0))
            child_tiles = [tiles_of[c.key] for c in sorted(node.children, key=lambda c: c.key)]
            box = OrientedBox.from_json(info["box"])
            if child_tiles:
                box = box_enclosing([box] + [c.box for c in child_tiles])
            tiles_of[node.key] = Tile(box=box, geometric_error=float(info["error"]), content_uri=node.uri,
                                      children=child_tiles, refine="REPLACE",
                                      content_box=OrientedBox.from_json(info["box"]))
            report(progress, "tiles", n_done + 1, total)
        stage("tiles")
        root_tile = tiles_of[root.key]
        root_tile.transform = frame.tileset_transform()
        enforce_monotonic_errors(root_tile)
        diag = float(np.linalg.norm(np.asarray(root_tile.box.half_axes)) * 2)
        Tileset(root=root_tile, geometric_error=max(diag, root_tile.geometric_error * 2),
                extras={"onemap": {"layer": "mesh", "crs": src.crs.to_string(), "origin": list(origin),
                                   "geoid": repr(active_geoid())}}).write(staging.tmp / "tileset.json")
        res.tiles = len(nodes)
        res.seconds = time.perf_counter() - t0
        write_manifest(staging.tmp, {"settings": settings, "tiles": manifest_tiles})
        (staging.tmp / "report.json").write_bytes(orjson.dumps(res.to_json(), option=orjson.OPT_INDENT_2))
        staging.publish()
        stage("publish")
    except BaseException:
        staging.abort()
        raise
    res.seconds = time.perf_counter() - t0
    log.info(res.summary())
    return res


def _post_order(node: _Node) -> list[_Node]:
    out: list[_Node] = []
    for c in sorted(node.children, key=lambda c: c.key):
        out.extend(_post_order(c))
    out.append(node)
    return out


__all__ = ["MeshOptions", "MeshResult", "Part", "build_mesh"]
