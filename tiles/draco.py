"""KHR_draco_mesh_compression for our triangle primitives (DracoPy = Google's Draco encoder/decoder).

Encoding (:func:`add_draco_primitive`): POSITION (quantised to ``POSITION_BITS`` over the mesh's
largest extent), NORMAL (``NORMAL_BITS``), COLOR_0 (uint8 RGBA) and the EXT_mesh_features feature
ids as a Draco *generic* attribute named ``_FEATURE_ID_0`` (float32, exact) go into one Draco
buffer view; the glTF accessors keep count/type/componentType (and POSITION min/max) but no
bufferView, as the extension requires. The extension is *required*: there is no uncompressed
fallback. Draco may reorder vertices and faces; every attribute keeps its vertex, so feature ids
stay attached to their building.

Decoding (:func:`decode_draco_primitive`) returns the primitive's attributes and indices so our own
reader (:class:`tiles.gltf_read.Glb`) checks compressed tiles like plain ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tiles.gltf import GlbBuilder, MeshData

EXTENSION = "KHR_draco_mesh_compression"
POSITION_BITS = 16  # a 500 m tile: 7.6 mm steps
NORMAL_BITS = 10
COMPRESSION_LEVEL = 7  # 0 fastest .. 10 smallest (decoding speed is the same)
_FLOAT, _UNSIGNED_BYTE, _UNSIGNED_SHORT, _UNSIGNED_INT = 5126, 5121, 5123, 5125
# DracoPy attribute_type codes (draco::GeometryAttribute::Type)
_DRACO_POSITION, _DRACO_NORMAL, _DRACO_COLOR, _DRACO_GENERIC = 0, 1, 2, 4


def position_tolerance(positions: np.ndarray, bits: int = POSITION_BITS) -> float:
    """Largest per-axis error Draco's quantisation may introduce for these positions (metres)."""
    p = np.asarray(positions, np.float64)
    extent = float(np.max(p.max(axis=0) - p.min(axis=0))) if len(p) else 0.0
    return extent / (2**bits - 1)


def _dracopy():
    try:
        import DracoPy
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise RuntimeError("Draco compression needs the DracoPy package (pip install DracoPy)") from exc
    return DracoPy


def encode(mesh: MeshData) -> bytes:
    """The Draco bitstream of one primitive (positions, normals, colours, feature ids, faces)."""
    draco = _dracopy()
    generic = None
    if mesh.feature_ids is not None:
        generic = {"_FEATURE_ID_0": np.asarray(mesh.feature_ids, np.float32).reshape(-1, 1)}
    normals = None
    if mesh.normals is not None:
        n = np.asarray(mesh.normals, np.float64)
        length = np.linalg.norm(n, axis=1, keepdims=True)
        normals = np.divide(n, length, out=np.tile([0.0, 1.0, 0.0], (len(n), 1)), where=length > 1e-12)
    return draco.encode(
        np.asarray(mesh.positions, np.float64),
        np.asarray(mesh.indices, np.uint32).reshape(-1, 3),
        quantization_bits=POSITION_BITS,
        compression_level=COMPRESSION_LEVEL,
        normals=normals,
        normal_quantization_bits=NORMAL_BITS if normals is not None else None,
        colors=None if mesh.colors is None else np.ascontiguousarray(mesh.colors, np.uint8),
        generic_attributes=generic,
    )


def _unique_ids(decoded: Any) -> dict[str, int]:
    """glTF semantic -> Draco attribute unique id, read back from the decoded mesh."""
    ids: dict[str, int] = {}
    for attr in decoded.attributes:
        kind, name = attr["attribute_type"], attr.get("name")
        if kind == _DRACO_POSITION:
            ids["POSITION"] = attr["unique_id"]
        elif kind == _DRACO_NORMAL:
            ids["NORMAL"] = attr["unique_id"]
        elif kind == _DRACO_COLOR:
            ids["COLOR_0"] = attr["unique_id"]
        elif kind == _DRACO_GENERIC and name:
            ids[name] = attr["unique_id"]
    return ids


def add_draco_primitive(builder: GlbBuilder, mesh: MeshData) -> dict[str, Any]:
    """Compress ``mesh`` into one buffer view; returns the primitive dict (attributes, indices, mode
    and the extension) with accessors that have no bufferView, as KHR_draco_mesh_compression wants."""
    if mesh.n_vertices == 0 or mesh.n_triangles == 0:
        raise ValueError("empty mesh")
    blob = encode(mesh)
    decoded = _dracopy().decode(blob)
    n_vertices, n_indices = len(decoded.points), int(np.asarray(decoded.faces).size)
    ids = _unique_ids(decoded)
    view = builder.add_view(blob)
    accessors = builder.gltf["accessors"]

    def accessor(component: int, kind: str, count: int, **more: Any) -> int:
        accessors.append({"componentType": component, "count": count, "type": kind, **more})
        return len(accessors) - 1

    points = np.asarray(decoded.points, np.float32)
    attributes = {"POSITION": accessor(_FLOAT, "VEC3", n_vertices, min=[float(v) for v in points.min(axis=0)],
                                       max=[float(v) for v in points.max(axis=0)])}
    if mesh.normals is not None:
        attributes["NORMAL"] = accessor(_FLOAT, "VEC3", n_vertices)
    if mesh.colors is not None:
        attributes["COLOR_0"] = accessor(_UNSIGNED_BYTE, "VEC4", n_vertices, normalized=True)
    if mesh.feature_ids is not None:
        attributes["_FEATURE_ID_0"] = accessor(_FLOAT, "SCALAR", n_vertices)
    missing = [k for k in attributes if k not in ids]
    if missing:
        raise RuntimeError(f"Draco stream lacks attribute(s) {missing}")
    indices = accessor(_UNSIGNED_SHORT if n_vertices < 65535 else _UNSIGNED_INT, "SCALAR", n_indices)
    builder.use_extension(EXTENSION)
    builder.required_extensions.add(EXTENSION)
    return {
        "attributes": attributes,
        "indices": indices,
        "mode": 4,
        "extensions": {EXTENSION: {"bufferView": view, "attributes": {k: ids[k] for k in attributes}}},
    }


def decode_draco_primitive(buffer_view: bytes, primitive: dict[str, Any]) -> dict[str, np.ndarray]:
    """Decode one compressed primitive: ``{semantic: array, "indices": (3T,) int64}``; COLOR_0 is
    uint8 (as stored), feature ids float."""
    decoded = _dracopy().decode(bytes(buffer_view))
    by_id = {a["unique_id"]: a for a in decoded.attributes}
    out: dict[str, np.ndarray] = {}
    for semantic, uid in primitive["extensions"][EXTENSION]["attributes"].items():
        if uid not in by_id:
            raise ValueError(f"Draco stream has no attribute {uid} for {semantic}")
        data = np.asarray(by_id[uid]["data"])
        out[semantic] = data[:, 0] if data.ndim == 2 and data.shape[1] == 1 else data
    out["indices"] = np.asarray(decoded.faces, np.int64).reshape(-1)
    return out


def accessor_array(glb: Any, index: int) -> np.ndarray | None:
    """The decoded values of accessor ``index`` when it belongs to a Draco-compressed primitive of
    ``glb`` (a :class:`tiles.gltf_read.Glb`; decoded primitives are cached on it), else None."""
    state = glb.__dict__.setdefault("_draco", {})
    if "owners" not in state:
        owners: dict[int, tuple[int, str]] = {}
        prims = [p for m in glb.json.get("meshes", []) for p in m.get("primitives", [])]
        for p_idx, prim in enumerate(prims):
            if EXTENSION not in prim.get("extensions", {}):
                continue
            for semantic, acc in prim.get("attributes", {}).items():
                owners[acc] = (p_idx, semantic)
            if "indices" in prim:
                owners[prim["indices"]] = (p_idx, "indices")
        state["owners"], state["prims"], state["decoded"] = owners, prims, {}
    owner = state["owners"].get(index)
    if owner is None:
        return None
    p_idx, semantic = owner
    if p_idx not in state["decoded"]:
        prim = state["prims"][p_idx]
        state["decoded"][p_idx] = decode_draco_primitive(glb.view_bytes(prim["extensions"][EXTENSION]["bufferView"]),
                                                         prim)
    return state["decoded"][p_idx].get(semantic)
