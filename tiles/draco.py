"""KHR_draco_mesh_compression for our triangle primitives (DracoPy = Google's Draco encoder/decoder).

Encoding (:func:`add_draco_primitive` for :class:`tiles.gltf.MeshData`, :func:`add_draco_arrays`
for any triangle primitive, e.g. the textured reality mesh): POSITION (quantised to
``POSITION_BITS`` over the mesh's largest extent), NORMAL (``NORMAL_BITS``), TEXCOORD_0
(``TEXCOORD_BITS`` over the UV range), COLOR_0 (uint8 RGBA) and the EXT_mesh_features feature
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

from tiles.issues import ERROR, WARNING

if TYPE_CHECKING:
    from tiles.gltf import GlbBuilder, MeshData

EXTENSION = "KHR_draco_mesh_compression"
POSITION_BITS = 16  # a 500 m tile: 7.6 mm steps
NORMAL_BITS = 10
TEXCOORD_BITS = 14  # 1/16384 of the UV range: a quarter texel of a 4096 px texture
COMPRESSION_LEVEL = 7  # 0 fastest .. 10 smallest (decoding speed is the same)
_FLOAT, _UNSIGNED_BYTE, _UNSIGNED_SHORT, _UNSIGNED_INT = 5126, 5121, 5123, 5125
# DracoPy attribute_type codes (draco::GeometryAttribute::Type)
_DRACO_POSITION, _DRACO_NORMAL, _DRACO_COLOR, _DRACO_TEX_COORD, _DRACO_GENERIC = 0, 1, 2, 3, 4


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
    return encode_arrays(mesh.positions, mesh.indices, normals=mesh.normals, colors=mesh.colors,
                         feature_ids=mesh.feature_ids)


def encode_arrays(positions: np.ndarray, indices: np.ndarray, *, normals: np.ndarray | None = None,
                  colors: np.ndarray | None = None, uv: np.ndarray | None = None,
                  feature_ids: np.ndarray | None = None) -> bytes:
    """The Draco bitstream of one triangle primitive given as arrays (glTF space)."""
    draco = _dracopy()
    generic = None
    if feature_ids is not None:
        generic = {"_FEATURE_ID_0": np.asarray(feature_ids, np.float32).reshape(-1, 1)}
    if normals is not None:
        n = np.asarray(normals, np.float64)
        length = np.linalg.norm(n, axis=1, keepdims=True)
        normals = np.divide(n, length, out=np.tile([0.0, 1.0, 0.0], (len(n), 1)), where=length > 1e-12)
    return draco.encode(
        np.asarray(positions, np.float64),
        np.asarray(indices, np.uint32).reshape(-1, 3),
        quantization_bits=POSITION_BITS,
        compression_level=COMPRESSION_LEVEL,
        normals=normals,
        normal_quantization_bits=NORMAL_BITS if normals is not None else None,
        colors=None if colors is None else np.ascontiguousarray(colors, np.uint8),
        tex_coord=None if uv is None else np.ascontiguousarray(uv, np.float64),
        tex_coord_quantization_bits=TEXCOORD_BITS if uv is not None else None,
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
        elif kind == _DRACO_TEX_COORD:
            ids["TEXCOORD_0"] = attr["unique_id"]
        elif kind == _DRACO_GENERIC and name:
            ids[name] = attr["unique_id"]
    return ids


def add_draco_primitive(builder: GlbBuilder, mesh: MeshData) -> dict[str, Any]:
    """Compress ``mesh`` into one buffer view; returns the primitive dict (attributes, indices, mode
    and the extension) with accessors that have no bufferView, as KHR_draco_mesh_compression wants."""
    return add_draco_arrays(builder, mesh.positions, mesh.indices, normals=mesh.normals, colors=mesh.colors,
                            feature_ids=mesh.feature_ids)


def add_draco_arrays(builder: GlbBuilder, positions: np.ndarray, indices: np.ndarray, *,
                     normals: np.ndarray | None = None, colors: np.ndarray | None = None,
                     uv: np.ndarray | None = None, feature_ids: np.ndarray | None = None) -> dict[str, Any]:
    """:func:`add_draco_primitive` for arrays: POSITION, optional NORMAL, TEXCOORD_0 (float VEC2),
    COLOR_0 (uint8 VEC4 normalised) and ``_FEATURE_ID_0``; the accessors' counts are the decoded
    stream's (Draco may split vertices along attribute seams)."""
    if len(positions) == 0 or len(np.asarray(indices).reshape(-1)) == 0:
        raise ValueError("empty mesh")
    blob = encode_arrays(positions, indices, normals=normals, colors=colors, uv=uv, feature_ids=feature_ids)
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
    if normals is not None:
        attributes["NORMAL"] = accessor(_FLOAT, "VEC3", n_vertices)
    if uv is not None:
        attributes["TEXCOORD_0"] = accessor(_FLOAT, "VEC2", n_vertices)
    if colors is not None:
        attributes["COLOR_0"] = accessor(_UNSIGNED_BYTE, "VEC4", n_vertices, normalized=True)
    if feature_ids is not None:
        attributes["_FEATURE_ID_0"] = accessor(_FLOAT, "SCALAR", n_vertices)
    missing = [k for k in attributes if k not in ids]
    if missing:
        raise RuntimeError(f"Draco stream lacks attribute(s) {missing}")
    index_accessor = accessor(_UNSIGNED_SHORT if n_vertices < 65535 else _UNSIGNED_INT, "SCALAR", n_indices)
    builder.use_extension(EXTENSION)
    builder.required_extensions.add(EXTENSION)
    return {
        "attributes": attributes,
        "indices": index_accessor,
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


def draco_issues(glb: Any) -> list[tuple[str, str]]:
    """Decode every KHR_draco_mesh_compression primitive of ``glb`` (a :class:`tiles.gltf_read.Glb`)
    and check it against its accessors: every declared attribute is in the stream with the
    accessor's count and width, values are finite, the indices count matches and every index
    names a decoded vertex, POSITION lies within the accessor's min/max. (severity, message) pairs;
    DracoPy missing is one warning (compressed contents then go unchecked)."""
    from tiles.gltf import WIDTH_OF_TYPE

    prims = [p for m in glb.json.get("meshes", []) for p in m.get("primitives", [])]
    compressed = [(i, p) for i, p in enumerate(prims) if EXTENSION in p.get("extensions", {})]
    if not compressed:
        return []
    try:
        _dracopy()
    except RuntimeError as exc:
        return [(WARNING, f"{EXTENSION}: not decoded ({exc})")]
    out: list[tuple[str, str]] = []
    accessors = glb.json.get("accessors", [])
    for i, prim in compressed:
        where = f"primitive {i} ({EXTENSION})"
        ext = prim["extensions"][EXTENSION]
        try:
            data = decode_draco_primitive(glb.view_bytes(ext["bufferView"]), prim)
        except (ValueError, KeyError, IndexError, TypeError, RuntimeError) as exc:
            out.append((ERROR, f"{where}: the Draco stream does not decode: {exc}"))
            continue
        n_vertices = None
        for semantic, acc_idx in prim.get("attributes", {}).items():
            if semantic not in ext.get("attributes", {}):
                out.append((ERROR, f"{where}: attribute {semantic} is not in the Draco stream"))
                continue
            acc, arr = accessors[acc_idx], np.asarray(data[semantic])
            width = WIDTH_OF_TYPE.get(acc.get("type"), 1)
            got = arr.shape[1] if arr.ndim == 2 else 1
            if len(arr) != acc.get("count") or got != width:
                out.append((ERROR, f"{where}: {semantic} decodes to {len(arr)} x {got}, the accessor says "
                                     f"{acc.get('count')} x {width}"))
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                out.append((ERROR, f"{where}: {semantic} decodes to non-finite values"))
            if semantic == "POSITION":
                n_vertices = len(arr)
                lo, hi = acc.get("min"), acc.get("max")
                if lo is not None and hi is not None and len(arr):
                    tol = 1e-4 * max(1.0, float(np.max(np.abs(np.r_[lo, hi]))))
                    if (arr.min(axis=0) < np.asarray(lo) - tol).any() or (arr.max(axis=0) > np.asarray(hi) + tol).any():
                        out.append((ERROR, f"{where}: decoded POSITION outside the accessor's min/max"))
        idx = data["indices"]
        if "indices" in prim and len(idx) != accessors[prim["indices"]].get("count"):
            out.append((ERROR, f"{where}: {len(idx)} indices decoded, the accessor says "
                                 f"{accessors[prim['indices']].get('count')}"))
        if n_vertices is not None and len(idx) and (idx.min() < 0 or idx.max() >= n_vertices):
            out.append((ERROR, f"{where}: indices outside the {n_vertices} decoded vertices"))
    return out
