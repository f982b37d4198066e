"""Validate 3D Tiles tilesets and quantized-mesh terrain directories.

:func:`validate_path` finds every ``tileset.json`` and ``layer.json`` under a directory and checks:

Tilesets
- the tileset JSON against the 3D Tiles 1.1 JSON schema (``tiles/schema/3d-tiles-1.1``);
- geometricError non-increasing from the tileset down to the leaves;
- every content URI resolves (external tilesets are followed, with the parent's transform);
- b3dm / pnts / i3dm / cmpt headers (magic, version, byte lengths, feature/batch table JSON,
  ``BATCH_LENGTH`` / ``POINTS_LENGTH``, batch-table array lengths, positions inside the binary);
- that each content lies inside its tile's (and its own) bounding volume — box, sphere or
  region — after the content's own frame (glTF y-up → z-up, ``RTC_CENTER``, ``CESIUM_RTC``,
  node matrices, ``EXT_mesh_gpu_instancing``) and the tile transform chain;
- ``EXT_mesh_features`` / ``EXT_instance_features`` feature ids against
  ``EXT_structural_metadata`` property table counts;
- every glb (standalone, or inside b3dm) through the Khronos glTF validator, many files per
  node process (:mod:`tiles.gltf_validator`).

Terrain (a directory with ``layer.json``)
- the layer.json fields Cesium reads; availability rectangles inside the tiling scheme, parents
  of available tiles available, level 0 present;
- every available tile present and decodable (:func:`tiles.terrain.decode_tile`), with edge
  lists on the right borders, the extensions layer.json announces, a bounding sphere that holds
  its vertices, and heights within the expected ellipsoidal range (layer.json's ``onemap`` block,
  or a DEM's range + EGM96 when ``dem`` is given).

Issues carry a severity (``error`` / ``warning`` / ``info``), the file and a message.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import struct
import tempfile
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np

log = logging.getLogger(__name__)

SCHEMA_PATH = Path(__file__).parent / "schema" / "3d-tiles-1.1" / "tileset.schema.json"
ERROR, WARNING, INFO = "error", "warning", "info"
ABS_TOL = 0.02  # metres of slack for "inside the bounding volume" (float32 content)
REL_TOL = 1e-6
MAX_SCHEMA_ISSUES = 20
GE_EPS = 1e-9
TERRAIN_EXTENSIONS = {"octvertexnormals": 1, "vertexnormals": 1, "watermask": 2, "metadata": 4}
Y_UP_TO_Z_UP = np.array([[1.0, 0, 0, 0], [0, 0, -1.0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1.0]])


@dataclass(frozen=True)
class Issue:
    severity: str
    file: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity.upper():7s} {self.file}: {self.message}"


@dataclass
class ValidationReport:
    root: Path
    issues: list[Issue] = field(default_factory=list)
    tilesets: int = 0
    tiles: int = 0
    contents: int = 0
    glbs: int = 0
    terrain_tiles: int = 0
    seconds: float = 0.0

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == ERROR]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == WARNING]

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        return (f"{'OK' if self.ok else 'FAILED'} {self.root}: {self.tilesets} tilesets, {self.tiles} tiles, "
                f"{self.contents} contents, {self.glbs} glb validated, {self.terrain_tiles} terrain tiles; "
                f"{len(self.errors)} errors, {len(self.warnings)} warnings ({self.seconds:.1f} s)")


# =============================================================================== helpers
def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


@lru_cache(maxsize=1)
def _tileset_validator() -> Any:
    from jsonschema import Draft202012Validator

    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def schema_errors(tileset: dict[str, Any]) -> list[str]:
    """JSON-schema violations of a tileset JSON, as 'path: message' strings."""
    out = []
    for err in sorted(_tileset_validator().iter_errors(tileset), key=lambda e: list(map(str, e.path))):
        where = "/".join(str(p) for p in err.absolute_path) or "(root)"
        out.append(f"{where}: {err.message[:300]}")
    return out


def column_major(values: Iterable[float] | None) -> np.ndarray:
    """4x4 matrix from the 16 column-major numbers of a tile ``transform`` (identity if None)."""
    if values is None:
        return np.eye(4)
    return np.asarray(list(values), dtype=np.float64).reshape(4, 4).T


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:3, :3].T + m[:3, 3]


# =============================================================================== bounding volumes
def _well_formed(volume: dict[str, Any]) -> bool:
    for key, size in (("box", 12), ("sphere", 4), ("region", 6)):
        if key in volume:
            v = volume[key]
            return (isinstance(v, list) and len(v) == size
                    and all(isinstance(x, (int, float)) and math.isfinite(x) for x in v))
    return False


def volume_excess(volume: dict[str, Any], pts_tile: np.ndarray, world: np.ndarray) -> tuple[float, int]:
    """(largest distance in metres outside the volume, number of points outside) for points
    given in the tile frame; ``world`` maps the tile frame to ECEF (for regions)."""
    if len(pts_tile) == 0 or not _well_formed(volume):
        return 0.0, 0  # malformed volumes are reported by the schema check
    if "box" in volume:
        b = np.asarray(volume["box"], dtype=np.float64)
        centre, axes = b[:3], b[3:12].reshape(3, 3)  # rows = half-axis vectors
        lengths = np.linalg.norm(axes, axis=1)
        d = pts_tile - centre
        if np.all(lengths > 0) and abs(np.linalg.det(axes)) > 1e-12 * np.prod(lengths):
            coords = np.linalg.solve(axes.T, d.T).T  # d = coords @ axes
            excess = (np.abs(coords) - 1.0) * lengths
        else:  # degenerate (flat) box: project on the non-zero axes
            excess = np.zeros_like(d)
            for k in range(3):
                if lengths[k] > 0:
                    excess[:, k] = np.abs(d @ (axes[k] / lengths[k])) - lengths[k]
        tol = ABS_TOL + REL_TOL * float(np.max(lengths) + np.linalg.norm(centre))
        worst = np.max(excess, axis=1)
        return float(max(worst.max(), 0.0)), int(np.sum(worst > tol))
    if "sphere" in volume:
        s = np.asarray(volume["sphere"], dtype=np.float64)
        dist = np.linalg.norm(pts_tile - s[:3], axis=1) - s[3]
        tol = ABS_TOL + REL_TOL * float(s[3] + np.linalg.norm(s[:3]))
        return float(max(dist.max(), 0.0)), int(np.sum(dist > tol))
    if "region" in volume:
        from core.frames import ecef_to_lonlat_ellipsoidal

        w, s, e, n, hmin, hmax = (float(v) for v in volume["region"])
        llh = ecef_to_lonlat_ellipsoidal(_apply(world, pts_tile))
        lon, lat, h = np.radians(llh[:, 0]), np.radians(llh[:, 1]), llh[:, 2]
        r = 6_378_137.0
        if e < w:  # crosses the antimeridian
            lon = np.where(lon < w, lon + 2 * math.pi, lon)
            e += 2 * math.pi
        out = np.maximum.reduce([
            (w - lon) * r * np.cos(lat), (lon - e) * r * np.cos(lat), (s - lat) * r, (lat - n) * r,
            hmin - h, h - hmax, np.zeros_like(h),
        ])
        return float(out.max()), int(np.sum(out > ABS_TOL + 1e-3))
    return 0.0, 0


# =============================================================================== content parsing
@dataclass
class ContentGeometry:
    """Vertex positions of one content in its tile frame, plus findings while reading it."""

    points: np.ndarray
    issues: list[tuple[str, str]] = field(default_factory=list)
    glb: bytes | None = None  # a glb to pass to the glTF validator
    exact: bool = True  # False when only accessor bounds were available (Draco)


def _node_matrix(node: dict[str, Any]) -> np.ndarray:
    if "matrix" in node:
        return column_major(node["matrix"])
    m = np.eye(4)
    t = node.get("translation", [0, 0, 0])
    x, y, z, w = node.get("rotation", [0, 0, 0, 1])
    s = node.get("scale", [1, 1, 1])
    rot = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])
    m[:3, :3] = rot * np.asarray(s, dtype=np.float64)
    m[:3, 3] = t
    return m


_NORMALIZE = {5120: 127.0, 5121: 255.0, 5122: 32767.0, 5123: 65535.0}


def _float_accessor(glb: Any, index: int) -> np.ndarray:
    acc = glb.json["accessors"][index]
    values = np.asarray(glb.accessor(index), dtype=np.float64)
    if acc.get("normalized") and acc["componentType"] in _NORMALIZE:
        values = values / _NORMALIZE[acc["componentType"]]
        if acc["componentType"] in (5120, 5122):
            values = np.maximum(values, -1.0)
    return values


def _accessor_corners(acc: dict[str, Any]) -> np.ndarray | None:
    lo, hi = acc.get("min"), acc.get("max")
    if lo is None or hi is None or len(lo) != 3:
        return None
    return _box_corners(np.asarray(lo, float), np.asarray(hi, float))


def _box_corners(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])


def _quat_matrices(q: np.ndarray) -> np.ndarray:
    x, y, z, w = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], axis=1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], axis=1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], axis=1),
    ], axis=1)


def glb_positions(data: bytes) -> ContentGeometry:
    """All vertex positions of a glb's default scene in glTF space (node transforms applied,
    GPU instances expanded on mesh bounds); metadata counts checked on the way."""
    from tiles.gltf import read_glb

    glb = read_glb(data)
    js = glb.json
    geo = ContentGeometry(np.zeros((0, 3)), glb=data)
    pts: list[np.ndarray] = []
    scenes = js.get("scenes") or [{"nodes": list(range(len(js.get("nodes", []))))}]
    scene = scenes[js.get("scene", 0)] if scenes else {"nodes": []}
    stack = [(i, np.eye(4)) for i in scene.get("nodes", [])]
    while stack:
        idx, parent = stack.pop()
        node = js["nodes"][idx]
        m = parent @ _node_matrix(node)
        if "mesh" in node:
            local = []
            for prim in js["meshes"][node["mesh"]]["primitives"]:
                pos_idx = prim.get("attributes", {}).get("POSITION")
                if pos_idx is None:
                    continue
                acc = js["accessors"][pos_idx]
                if "KHR_draco_mesh_compression" in prim.get("extensions", {}) or "bufferView" not in acc:
                    corners = _accessor_corners(acc)
                    if corners is not None:
                        local.append(corners)
                        geo.exact = False
                    continue
                local.append(_float_accessor(glb, pos_idx))
            if local:
                verts = np.concatenate(local)
                inst = node.get("extensions", {}).get("EXT_mesh_gpu_instancing")
                if inst:
                    verts = _instanced(glb, inst, verts)
                pts.append(_apply(m, verts))
        stack.extend((c, m) for c in node.get("children", []))
    geo.points = np.concatenate(pts) if pts else np.zeros((0, 3))
    geo.issues.extend(metadata_issues(glb))
    return geo


def _instanced(glb: Any, inst: dict[str, Any], verts: np.ndarray) -> np.ndarray:
    """Mesh bounds corners placed at every instance (translation/rotation/scale)."""
    attrs = inst.get("attributes", {})
    lo, hi = verts.min(axis=0), verts.max(axis=0)
    corners = _box_corners(lo, hi)
    n = None
    parts = {}
    for key in ("TRANSLATION", "ROTATION", "SCALE"):
        if key in attrs:
            parts[key] = _float_accessor(glb, attrs[key])
            n = len(parts[key])
    if n is None:
        return verts
    t = parts.get("TRANSLATION", np.zeros((n, 3)))
    r = _quat_matrices(parts["ROTATION"]) if "ROTATION" in parts else np.broadcast_to(np.eye(3), (n, 3, 3))
    s = parts.get("SCALE", np.ones((n, 3)))
    placed = np.einsum("nij,nkj->nki", r, corners[None, :, :] * s[:, None, :])  # (n, 8, 3)
    return (placed + t[:, None, :]).reshape(-1, 3)


def _feature_ids(glb: Any, fid: dict[str, Any], attributes: dict[str, int]) -> np.ndarray | None:
    if "attribute" in fid:
        acc = attributes.get(f"_FEATURE_ID_{fid['attribute']}")
        return None if acc is None else np.asarray(glb.accessor(acc), dtype=np.float64).reshape(-1)
    return None


def metadata_issues(glb: Any) -> list[tuple[str, str]]:
    """EXT_mesh_features / EXT_instance_features feature ids vs EXT_structural_metadata tables."""
    js = glb.json
    out: list[tuple[str, str]] = []
    meta = js.get("extensions", {}).get("EXT_structural_metadata", {})
    tables = meta.get("propertyTables", [])
    classes = meta.get("schema", {}).get("classes", {})
    for t_idx, table in enumerate(tables):
        if table.get("class") not in classes:
            out.append((ERROR, f"propertyTables[{t_idx}] class {table.get('class')!r} is not in the schema"))
        out.extend(_table_size_issues(glb, t_idx, table, classes.get(table.get("class"), {})))

    def check(where: str, fid: dict[str, Any], attributes: dict[str, int]) -> None:
        count = fid.get("featureCount")
        ids = _feature_ids(glb, fid, attributes)
        if ids is not None:
            if "attribute" in fid and f"_FEATURE_ID_{fid['attribute']}" not in attributes:
                out.append((ERROR, f"{where}: attribute _FEATURE_ID_{fid['attribute']} missing"))
            null = fid.get("nullFeatureId")
            real = ids[ids != null] if null is not None else ids
            distinct = len(np.unique(real))
            if count is not None and distinct > count:
                out.append((ERROR, f"{where}: {distinct} distinct feature ids > featureCount {count}"))
        else:
            real = np.zeros(0)
        p = fid.get("propertyTable")
        if p is None:
            return
        if not 0 <= p < len(tables):
            out.append((ERROR, f"{where}: propertyTable {p} does not exist ({len(tables)} tables)"))
            return
        rows = tables[p].get("count", 0)
        # several primitives/nodes may share one table, each using some of its rows
        if count is not None and count > rows:
            out.append((ERROR, f"{where}: featureCount {count} > propertyTables[{p}].count {rows}"))
        if len(real) and (real.max() >= rows or real.min() < 0):
            out.append((ERROR, f"{where}: feature id {int(real.max())} outside propertyTables[{p}] "
                               f"(count {rows})"))

    for m_idx, mesh in enumerate(js.get("meshes", [])):
        for p_idx, prim in enumerate(mesh.get("primitives", [])):
            feats = prim.get("extensions", {}).get("EXT_mesh_features", {})
            for f_idx, fid in enumerate(feats.get("featureIds", [])):
                where = f"meshes[{m_idx}].primitives[{p_idx}] featureIds[{f_idx}]"
                check(where, fid, prim.get("attributes", {}))
    for n_idx, node in enumerate(js.get("nodes", [])):
        ext = node.get("extensions", {})
        feats = ext.get("EXT_instance_features", {})
        attrs = ext.get("EXT_mesh_gpu_instancing", {}).get("attributes", {})
        for f_idx, fid in enumerate(feats.get("featureIds", [])):
            check(f"nodes[{n_idx}] instance featureIds[{f_idx}]", fid, attrs)
    return out


_COMPONENT_BYTES = {"INT8": 1, "UINT8": 1, "INT16": 2, "UINT16": 2, "INT32": 4, "UINT32": 4,
                    "INT64": 8, "UINT64": 8, "FLOAT32": 4, "FLOAT64": 8}
_TYPE_COMPONENTS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}


def _table_size_issues(glb: Any, t_idx: int, table: dict[str, Any],
                       cls: dict[str, Any]) -> list[tuple[str, str]]:
    """Fixed-size property value buffers must hold ``count`` elements."""
    out = []
    count = table.get("count", 0)
    views = glb.json.get("bufferViews", [])
    props = cls.get("properties", {})
    for name, prop in table.get("properties", {}).items():
        definition = props.get(name)
        if definition is None:
            out.append((ERROR, f"propertyTables[{t_idx}].{name} is not a property of its class"))
            continue
        view = prop.get("values")
        if view is None or not 0 <= view < len(views):
            out.append((ERROR, f"propertyTables[{t_idx}].{name}: values bufferView {view} missing"))
            continue
        if definition.get("array") and "count" not in definition:
            continue  # variable-length: sizes come from arrayOffsets
        per = definition.get("count", 1) if definition.get("array") else 1
        kind = definition.get("type")
        if kind == "BOOLEAN":
            need = math.ceil(count * per / 8)
        elif kind in _TYPE_COMPONENTS and definition.get("componentType") in _COMPONENT_BYTES:
            need = count * per * _TYPE_COMPONENTS[kind] * _COMPONENT_BYTES[definition["componentType"]]
        else:
            continue
        have = views[view].get("byteLength", 0)
        if have < need:
            out.append((ERROR, f"propertyTables[{t_idx}].{name}: {have} bytes of values < {need} needed "
                               f"for count {count}"))
    return out


def _table_json(data: bytes, start: int, length: int, what: str, issues: list[tuple[str, str]]) -> dict:
    if length == 0:
        return {}
    try:
        parsed = json.loads(data[start:start + length].decode("utf-8").rstrip(" \x00"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        issues.append((ERROR, f"{what} JSON cannot be parsed: {exc}"))
        return {}
    if not isinstance(parsed, dict):
        issues.append((ERROR, f"{what} JSON is not an object"))
        return {}
    return parsed


def b3dm_geometry(data: bytes) -> ContentGeometry:
    issues: list[tuple[str, str]] = []
    if len(data) < 28:
        return ContentGeometry(np.zeros((0, 3)), [(ERROR, "b3dm shorter than its 28-byte header")])
    _, version, length, ft_json, ft_bin, bt_json, bt_bin = struct.unpack_from("<4s6I", data, 0)
    if version != 1:
        issues.append((ERROR, f"b3dm version {version} != 1"))
    if length != len(data):
        issues.append((ERROR, f"b3dm byteLength {length} != file size {len(data)}"))
    glb_start = 28 + ft_json + ft_bin + bt_json + bt_bin
    if glb_start > len(data):
        return ContentGeometry(np.zeros((0, 3)), [*issues, (ERROR, "b3dm table lengths run past the end")])
    for name, off in (("feature table JSON", 28 + ft_json), ("batch table", 28 + ft_json + ft_bin + bt_json),
                      ("glb", glb_start)):
        if off % 8:
            issues.append((WARNING, f"b3dm {name} section ends/starts at byte {off}, not 8-byte aligned"))
    ft = _table_json(data, 28, ft_json, "b3dm feature table", issues)
    bt = _table_json(data, 28 + ft_json + ft_bin, bt_json, "b3dm batch table", issues)
    batch_length = ft.get("BATCH_LENGTH")
    if not isinstance(batch_length, int) or batch_length < 0:
        issues.append((ERROR, "b3dm feature table lacks an integer BATCH_LENGTH"))
        batch_length = None
    if batch_length is not None:
        for key, value in bt.items():
            if key in ("extensions", "extras"):
                continue
            if isinstance(value, list) and len(value) != batch_length:
                issues.append((ERROR, f"b3dm batch table {key!r} has {len(value)} values, BATCH_LENGTH "
                                      f"{batch_length}"))
            elif isinstance(value, dict) and "byteOffset" in value and bt_bin == 0:
                issues.append((ERROR, f"b3dm batch table {key!r} is binary but the binary body is empty"))
    try:
        geo = glb_positions(data[glb_start:])
    except (ValueError, KeyError, IndexError, struct.error) as exc:
        return ContentGeometry(np.zeros((0, 3)), [*issues, (ERROR, f"b3dm glb unreadable: {exc}")])
    geo.points = _apply(Y_UP_TO_Z_UP, geo.points)
    rtc = ft.get("RTC_CENTER")
    if rtc is not None:
        geo.points = geo.points + np.asarray(rtc, dtype=np.float64)
    if batch_length is not None:
        from tiles.gltf import read_glb

        g = read_glb(data[glb_start:])
        for prim in g.primitives():
            acc = prim.get("attributes", {}).get("_BATCHID")
            if acc is not None:
                ids = np.asarray(g.accessor(acc))
                if len(ids) and ids.max() >= batch_length:
                    issues.append((ERROR, f"b3dm _BATCHID {int(ids.max())} >= BATCH_LENGTH {batch_length}"))
    geo.issues = issues + geo.issues
    return geo


def _failed(issues: list[tuple[str, str]], message: str) -> ContentGeometry:
    return ContentGeometry(np.zeros((0, 3)), [*issues, (ERROR, message)])


def pnts_geometry(data: bytes) -> ContentGeometry:
    issues: list[tuple[str, str]] = []
    if len(data) < 28:
        return ContentGeometry(np.zeros((0, 3)), [(ERROR, "pnts shorter than its 28-byte header")])
    _, version, length, ft_json, ft_bin, bt_json, bt_bin = struct.unpack_from("<4s6I", data, 0)
    if version != 1:
        issues.append((ERROR, f"pnts version {version} != 1"))
    if length != len(data):
        issues.append((ERROR, f"pnts byteLength {length} != file size {len(data)}"))
    if 28 + ft_json + ft_bin + bt_json + bt_bin > len(data):
        return ContentGeometry(np.zeros((0, 3)), [*issues, (ERROR, "pnts table lengths run past the end")])
    ft = _table_json(data, 28, ft_json, "pnts feature table", issues)
    _table_json(data, 28 + ft_json + ft_bin, bt_json, "pnts batch table", issues)
    n = ft.get("POINTS_LENGTH")
    if not isinstance(n, int) or n < 0:
        return ContentGeometry(np.zeros((0, 3)), [*issues, (ERROR, "pnts feature table lacks POINTS_LENGTH")])
    body = 28 + ft_json
    if "POSITION" in ft:
        off = ft["POSITION"].get("byteOffset", 0)
        if off + 12 * n > ft_bin:
            return _failed(issues, "pnts POSITION runs past the binary body")
        pts = np.frombuffer(data, dtype="<f4", count=3 * n, offset=body + off).reshape(-1, 3).astype(float)
    elif "POSITION_QUANTIZED" in ft:
        off = ft["POSITION_QUANTIZED"].get("byteOffset", 0)
        if off + 6 * n > ft_bin:
            return _failed(issues, "pnts POSITION_QUANTIZED runs past the binary body")
        if "QUANTIZED_VOLUME_OFFSET" not in ft or "QUANTIZED_VOLUME_SCALE" not in ft:
            return _failed(issues, "pnts quantized positions without QUANTIZED_VOLUME_OFFSET/SCALE")
        q = np.frombuffer(data, dtype="<u2", count=3 * n, offset=body + off).reshape(-1, 3).astype(float)
        scale, offset = np.asarray(ft["QUANTIZED_VOLUME_SCALE"]), np.asarray(ft["QUANTIZED_VOLUME_OFFSET"])
        pts = q / 65535.0 * scale + offset
    else:
        return _failed(issues, "pnts has neither POSITION nor POSITION_QUANTIZED")
    if "RTC_CENTER" in ft:
        pts = pts + np.asarray(ft["RTC_CENTER"], dtype=np.float64)
    return ContentGeometry(pts, issues)


def cmpt_geometry(data: bytes) -> ContentGeometry:
    if len(data) < 16:
        return ContentGeometry(np.zeros((0, 3)), [(ERROR, "cmpt shorter than its 16-byte header")])
    _, version, length, count = struct.unpack_from("<4s3I", data, 0)
    issues: list[tuple[str, str]] = []
    if length != len(data):
        issues.append((ERROR, f"cmpt byteLength {length} != file size {len(data)}"))
    pos, pts = 16, []
    glbs: list[bytes] = []
    for _ in range(count):
        if pos + 12 > len(data):
            issues.append((ERROR, "cmpt inner tile header runs past the end"))
            break
        (inner_len,) = struct.unpack_from("<I", data, pos + 8)
        inner = content_geometry(data[pos:pos + inner_len])
        pts.append(inner.points)
        issues.extend(inner.issues)
        if inner.glb is not None:
            glbs.append(inner.glb)
        pos += inner_len
    geo = ContentGeometry(np.concatenate(pts) if pts else np.zeros((0, 3)), issues)
    geo.glb = glbs[0] if glbs else None
    return geo


def i3dm_geometry(data: bytes) -> ContentGeometry:
    if len(data) < 32:
        return ContentGeometry(np.zeros((0, 3)), [(ERROR, "i3dm shorter than its 32-byte header")])
    _, version, length, ft_json, ft_bin, bt_json, bt_bin, gltf_format = struct.unpack_from("<4s7I", data, 0)
    issues: list[tuple[str, str]] = []
    if length != len(data):
        issues.append((ERROR, f"i3dm byteLength {length} != file size {len(data)}"))
    ft = _table_json(data, 32, ft_json, "i3dm feature table", issues)
    if not isinstance(ft.get("INSTANCES_LENGTH"), int):
        issues.append((ERROR, "i3dm feature table lacks INSTANCES_LENGTH"))
    issues.append((INFO, "i3dm content: bounding volume containment not checked"))
    return ContentGeometry(np.zeros((0, 3)), issues)


def content_geometry(data: bytes) -> ContentGeometry:
    """Positions (tile frame) and header findings of a b3dm / pnts / cmpt / i3dm / glb content."""
    magic = data[:4]
    if magic == b"b3dm":
        return b3dm_geometry(data)
    if magic == b"pnts":
        return pnts_geometry(data)
    if magic == b"cmpt":
        return cmpt_geometry(data)
    if magic == b"i3dm":
        return i3dm_geometry(data)
    if magic == b"glTF":
        try:
            geo = glb_positions(data)
        except (ValueError, KeyError, IndexError, struct.error) as exc:
            return ContentGeometry(np.zeros((0, 3)), [(ERROR, f"glb unreadable: {exc}")], glb=data)
        geo.points = _apply(Y_UP_TO_Z_UP, geo.points)
        rtc = geo_rtc(data)
        if rtc is not None:
            geo.points = geo.points + rtc
        return geo
    return ContentGeometry(np.zeros((0, 3)), [(ERROR, f"unknown content magic {magic!r}")])


def geo_rtc(data: bytes) -> np.ndarray | None:
    from tiles.gltf import read_glb

    ext = read_glb(data).json.get("extensions", {}).get("CESIUM_RTC")
    return None if not ext or "center" not in ext else np.asarray(ext["center"], dtype=np.float64)


# =============================================================================== tileset walk
@dataclass
class _Walker:
    root: Path
    report: ValidationReport
    gltf: bool
    visited: set[Path] = field(default_factory=set)
    glb_jobs: list[tuple[str, bytes | Path]] = field(default_factory=list)

    def issue(self, severity: str, file: Path | str, message: str) -> None:
        name = _rel(Path(file), self.root) if not isinstance(file, str) else file
        self.report.issues.append(Issue(severity, name, message))

    def tileset(self, path: Path, parent_world: np.ndarray, parent_error: float | None) -> None:
        path = path.resolve()
        if path in self.visited:
            return
        self.visited.add(path)
        self.report.tilesets += 1
        try:
            ts = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            self.issue(ERROR, path, f"cannot read tileset JSON: {exc}")
            return
        errors = schema_errors(ts) if isinstance(ts, dict) else ["(root): not a JSON object"]
        for msg in errors[:MAX_SCHEMA_ISSUES]:
            self.issue(ERROR, path, f"schema: {msg}")
        if len(errors) > MAX_SCHEMA_ISSUES:
            self.issue(ERROR, path, f"schema: … {len(errors) - MAX_SCHEMA_ISSUES} more violations")
        if not isinstance(ts, dict) or not isinstance(ts.get("root"), dict):
            return
        version = ts.get("asset", {}).get("version") if isinstance(ts.get("asset"), dict) else None
        if version not in ("1.0", "1.1"):
            self.issue(WARNING, path, f"asset.version {version!r} is neither 1.0 nor 1.1")
        ge = ts.get("geometricError")
        if isinstance(ge, (int, float)) and parent_error is not None and ge > parent_error + GE_EPS:
            self.issue(ERROR, path, f"external tileset geometricError {ge} > the referencing tile's "
                                    f"{parent_error}")
        top = ge if isinstance(ge, (int, float)) else parent_error
        self.tiles(path, ts["root"], parent_world, top)

    def tiles(self, path: Path, root: dict[str, Any], world0: np.ndarray, top_error: float | None) -> None:
        base = path.parent
        stack: list[tuple[dict[str, Any], np.ndarray, float | None, str]]
        stack = [(root, world0, top_error, "root")]
        while stack:
            tile, parent_world, parent_error, where = stack.pop()
            if not isinstance(tile, dict):
                continue
            self.report.tiles += 1
            try:
                world = parent_world @ column_major(tile.get("transform"))
            except (TypeError, ValueError):
                world = parent_world
            ge = tile.get("geometricError")
            if isinstance(ge, (int, float)) and parent_error is not None and ge > parent_error + GE_EPS:
                self.issue(ERROR, path, f"{where}: geometricError {ge} > parent's {parent_error} "
                                        "(must not increase towards the leaves)")
            contents = list(tile.get("contents") or []) + ([tile["content"]] if "content" in tile else [])
            for c_idx, content in enumerate(contents):
                if isinstance(content, dict) and isinstance(content.get("uri"), str):
                    self.content(path, base, content, tile, world, ge, f"{where}.content[{c_idx}]")
            children = tile.get("children") or []
            if isinstance(children, list):
                for i, child in enumerate(children):
                    next_error = ge if isinstance(ge, (int, float)) else parent_error
                    stack.append((child, world, next_error, f"{where}.children[{i}]"))

    def content(self, path: Path, base: Path, content: dict[str, Any], tile: dict[str, Any],
                world: np.ndarray, tile_error: float | None, where: str) -> None:
        uri = content["uri"]
        parts = urlsplit(uri)
        if parts.scheme in ("http", "https", "data"):
            self.issue(WARNING, path, f"{where}: external URI {uri!r} not checked")
            return
        target = (base / unquote(parts.path)).resolve()
        if not target.is_file():
            self.issue(ERROR, path, f"{where}: content {uri!r} does not resolve ({_rel(target, self.root)})")
            return
        if target.suffix.lower() == ".json":
            self.tileset(target, world, tile_error)
            return
        self.report.contents += 1
        data = target.read_bytes()
        geo = content_geometry(data)
        for severity, msg in geo.issues:
            self.issue(severity, target, msg)
        if geo.glb is not None and self.gltf:
            job: bytes | Path = target if data[:4] == b"glTF" else geo.glb
            self.glb_jobs.append((_rel(target, self.root), job))
        vols = [("tile boundingVolume", tile.get("boundingVolume"))]
        if isinstance(content.get("boundingVolume"), dict):
            vols.append(("content boundingVolume", content["boundingVolume"]))
        for label, vol in vols:
            if not isinstance(vol, dict) or len(geo.points) == 0:
                continue
            excess, n_out = volume_excess(vol, geo.points, world)
            if n_out:
                note = "" if geo.exact else " (Draco: accessor bounds)"
                self.issue(ERROR, target, f"{where}: {n_out} of {len(geo.points)} vertices outside the "
                                          f"{label}, by up to {excess:.3f} m{note}")

    def run_gltf_validator(self) -> None:
        if not self.glb_jobs:
            return
        from tiles.gltf_validator import validate_glb_files, validator_available

        if not validator_available():
            self.issue(WARNING, str(self.root), "glTF validator not installed (npm install): "
                                                "glb files not validated")
            return
        with tempfile.TemporaryDirectory(prefix="onemap-validate-") as tmp:
            paths: list[str] = []
            names: dict[str, str] = {}
            for name, job in self.glb_jobs:
                if isinstance(job, Path):
                    p = str(job)
                else:
                    p = str(Path(tmp) / (hashlib.sha1(job).hexdigest() + ".glb"))
                    Path(p).write_bytes(job)
                paths.append(p)
                names[p] = name
            reports = validate_glb_files(paths)
        self.report.glbs += len(reports)
        for rep in reports:
            name = names.get(rep["path"], rep["path"])
            msgs = rep.get("messages", [])
            if rep.get("numErrors"):
                first = "; ".join(f"{m.get('code')}: {m.get('message')} ({m.get('pointer', '')})"
                                  for m in msgs if m.get("severity") == 0)[:600]
                self.issue(ERROR, name, f"glTF validator: {rep['numErrors']} errors: {first}")
            if rep.get("numWarnings"):
                first = "; ".join(f"{m.get('code')}: {m.get('message')}" for m in msgs
                                  if m.get("severity") == 1)[:400]
                self.issue(WARNING, name, f"glTF validator: {rep['numWarnings']} warnings: {first}")


# =============================================================================== terrain
def _expected_height_range(layer: dict[str, Any], dem: Path | None) -> tuple[float, float] | None:
    if dem is not None:
        from core.frames import geoid_undulation
        from pipelines.dem import DemSampler

        sampler = DemSampler(dem)
        lo, hi = sampler.height_range()
        w, s, e, n = sampler.lonlat_bounds()
        lon, lat = np.meshgrid(np.linspace(w, e, 5), np.linspace(s, n, 5))
        und = geoid_undulation(lon.ravel(), lat.ravel())
        return lo + float(und.min()) - 0.5, hi + float(und.max()) + 0.5
    meta = layer.get("onemap", {})
    rng = meta.get("height_range_ellipsoidal") if isinstance(meta, dict) else None
    if isinstance(rng, list) and len(rng) == 2:
        return float(rng[0]) - 0.5, float(rng[1]) + 0.5
    return None


def validate_terrain(layer_path: Path, report: ValidationReport, *, dem: Path | None = None) -> None:
    from tiles.terrain import EXT_OCT_NORMALS, EXT_WATERMASK, QMAX, decode_tile, tile_bounds

    root = report.root

    def issue(sev: str, file: Path | str, msg: str) -> None:
        report.issues.append(Issue(sev, _rel(Path(file), root), msg))

    try:
        layer = json.loads(layer_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        issue(ERROR, layer_path, f"cannot read layer.json: {exc}")
        return
    fmt = layer.get("format", "quantized-mesh-1.0")
    if not isinstance(fmt, str) or not fmt.startswith("quantized-mesh-1."):
        issue(ERROR, layer_path, f"format {fmt!r} is not quantized-mesh-1.x")
    tiles = layer.get("tiles")
    if not (isinstance(tiles, list) and tiles and isinstance(tiles[0], str)
            and all(k in tiles[0] for k in ("{z}", "{x}", "{y}"))):
        issue(ERROR, layer_path, "tiles must be a list of URL templates with {z}, {x} and {y}")
        return
    if layer.get("scheme", "tms") != "tms":
        issue(ERROR, layer_path, f"scheme {layer.get('scheme')!r}: Cesium reads only 'tms'")
    projection = layer.get("projection", "EPSG:4326")
    if projection not in ("EPSG:4326", "EPSG:3857"):
        issue(ERROR, layer_path, f"projection {projection!r} is neither EPSG:4326 nor EPSG:3857")
    extensions = layer.get("extensions", [])
    unknown = [e for e in extensions if e not in TERRAIN_EXTENSIONS]
    if unknown:
        issue(WARNING, layer_path, f"unknown extensions {unknown}")
    if not isinstance(layer.get("version", "1.0.0"), str):
        issue(ERROR, layer_path, "version must be a string")
    bounds = layer.get("bounds", [-180, -90, 180, 90])
    if not (isinstance(bounds, list) and len(bounds) == 4
            and bounds[0] < bounds[2] and bounds[1] < bounds[3]):
        issue(ERROR, layer_path, f"bounds {bounds!r} is not [west, south, east, north]")
    available = layer.get("available")
    if not isinstance(available, list) or not available:
        issue(ERROR, layer_path, "no 'available' ranges: Cesium would assume every tile exists")
        return
    if "maxzoom" in layer and layer["maxzoom"] != len(available) - 1:
        issue(WARNING, layer_path, f"maxzoom {layer['maxzoom']} != last available level {len(available) - 1}")
    level0_x = 2 if projection == "EPSG:4326" else 1
    avail: list[set[tuple[int, int]]] = []
    for z, rects in enumerate(available):
        level: set[tuple[int, int]] = set()
        nx, ny = level0_x << z, 1 << z
        for r in rects:
            try:
                x0, y0, x1, y1 = int(r["startX"]), int(r["startY"]), int(r["endX"]), int(r["endY"])
            except (KeyError, TypeError, ValueError):
                issue(ERROR, layer_path, f"available[{z}]: bad rectangle {r!r}")
                continue
            if not (0 <= x0 <= x1 < nx and 0 <= y0 <= y1 < ny):
                issue(ERROR, layer_path, f"available[{z}] {r} outside the {nx}x{ny} tiles of level {z}")
                continue
            level.update((x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1))
        avail.append(level)
    if len(avail[0]) < level0_x:
        issue(WARNING, layer_path, "not every level-0 tile is available: Cesium requests them all")
    hrange = _expected_height_range(layer, dem)
    template = urlsplit(tiles[0]).path
    version = str(layer.get("version", "1.0.0"))
    for z, level in enumerate(avail):
        for x, y in sorted(level):
            if z > 0 and (x // 2, y // 2) not in avail[z - 1]:
                issue(ERROR, layer_path, f"tile {z}/{x}/{y} is available but its parent is not: unreachable")
            rel = template.replace("{z}", str(z)).replace("{x}", str(x)).replace("{y}", str(y))
            tile_path = layer_path.parent / rel.replace("{version}", version)
            if not tile_path.is_file():
                issue(ERROR, tile_path, "declared available in layer.json but missing")
                continue
            report.terrain_tiles += 1
            try:
                t = decode_tile(tile_path.read_bytes())
            except (ValueError, OSError, struct.error, EOFError, zlib.error) as exc:
                issue(ERROR, tile_path, f"cannot decode quantized-mesh tile: {exc}")
                continue
            nv = len(t.u)
            problems = []
            if nv == 0 or len(t.triangles) == 0:
                problems.append("no vertices or no triangles")
            else:
                if min(t.u.min(), t.v.min(), t.h.min()) < 0 or max(t.u.max(), t.v.max(), t.h.max()) > QMAX:
                    problems.append("u/v/height outside 0..32767")
                if t.triangles.min() < 0 or t.triangles.max() >= nv:
                    problems.append("triangle indices outside the vertex list")
                for name, idx, coord, value in (("west", t.west, t.u, 0), ("south", t.south, t.v, 0),
                                                ("east", t.east, t.u, QMAX), ("north", t.north, t.v, QMAX)):
                    if len(idx) == 0:
                        problems.append(f"no {name} edge vertices (no skirt: cracks)")
                    elif idx.max() >= nv or np.any(coord[idx] != value):
                        problems.append(f"{name} edge indices are not on the {name} border")
            for name in extensions:
                ext_id = TERRAIN_EXTENSIONS.get(name)
                if ext_id in (EXT_OCT_NORMALS, EXT_WATERMASK) and ext_id not in t.extensions:
                    problems.append(f"extension {name} announced in layer.json but absent")
            if EXT_OCT_NORMALS in t.extensions and len(t.extensions[EXT_OCT_NORMALS]) != 2 * nv:
                problems.append("octvertexnormals length != 2 x vertex count")
            if EXT_WATERMASK in t.extensions and len(t.extensions[EXT_WATERMASK]) not in (1, 65536):
                problems.append("watermask is neither 1 nor 65536 bytes")
            if nv:
                h = t.heights
                if hrange is not None and (h.min() < hrange[0] or h.max() > hrange[1]):
                    problems.append(f"heights {h.min():.2f}..{h.max():.2f} m outside the expected "
                                    f"ellipsoidal range {hrange[0]:.2f}..{hrange[1]:.2f} m")
                elif h.min() < -500 or h.max() > 9000:
                    problems.append(f"implausible heights {h.min():.1f}..{h.max():.1f} m")
                if projection == "EPSG:4326":
                    from quantized_mesh_encoder.ecef import to_ecef

                    lon, lat = t.lonlat(tile_bounds(z, x, y))
                    ecef = to_ecef(np.column_stack([lon, lat, h]))
                    dist = np.linalg.norm(ecef - np.asarray(t.sphere_center), axis=1).max()
                    if dist > t.sphere_radius + 1.0:
                        problems.append(f"bounding sphere (r {t.sphere_radius:.1f} m) misses vertices by "
                                        f"{dist - t.sphere_radius:.1f} m")
            for p in problems:
                issue(ERROR, tile_path, p)


# =============================================================================== entry points
def _targets(path: Path) -> Iterator[Path]:
    if path.is_file():
        yield path
        return
    found = sorted(list(path.rglob("tileset.json")) + list(path.rglob("layer.json")),
                   key=lambda p: (len(p.relative_to(path).parts), str(p)))
    yield from found


def validate_path(path: str | Path, *, gltf: bool = True, dem: str | Path | None = None) -> ValidationReport:
    """Validate every tileset.json / layer.json at or under ``path``."""
    t0 = time.perf_counter()
    path = Path(path)
    root = path if path.is_dir() else path.parent
    report = ValidationReport(root=root)
    if not path.exists():
        report.issues.append(Issue(ERROR, str(path), "no such file or directory"))
        return report
    walker = _Walker(root, report, gltf)
    targets = list(_targets(path))
    if not targets:
        report.issues.append(Issue(ERROR, str(path), "no tileset.json or layer.json found"))
    for target in targets:
        if target.name == "layer.json":
            validate_terrain(target, report, dem=Path(dem) if dem else None)
        elif target.resolve() not in walker.visited:
            walker.tileset(target, np.eye(4), None)
    walker.run_gltf_validator()
    report.seconds = time.perf_counter() - t0
    log.debug(report.summary())
    return report
