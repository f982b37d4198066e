"""Binary glTF (glb) reader: the counterpart of :mod:`tiles.gltf` (the writer).

:class:`Glb` parses any producer's glb (JSON + BIN chunks), decodes accessors once
(normalized/quantized integers dequantized here and nowhere else; Draco through
:mod:`tiles.draco`), property tables (``EXT_structural_metadata``) and walks the default scene
(node transforms, ``EXT_mesh_gpu_instancing``).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from tiles.gltf import CHUNK_BIN, CHUNK_JSON, DTYPE_OF_COMPONENT, GLB_MAGIC, METADATA_DTYPES, WIDTH_OF_TYPE
from tiles.volumes import apply_matrix, box_corners, column_major


def quaternions_to_matrices(q: np.ndarray) -> np.ndarray:
    """(N,4) glTF unit quaternions (x, y, z, w) → (N,3,3) rotation matrices."""
    x, y, z, w = np.asarray(q, np.float64).T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], 1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], 1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], 1),
    ], axis=1)


@dataclass
class Glb:
    """A parsed glb: JSON + BIN chunk, with accessor and property-table decoding."""

    json: dict[str, Any]
    bin: bytes

    def view_bytes(self, view_index: int) -> bytes:
        v = self.json["bufferViews"][view_index]
        start = v.get("byteOffset", 0)
        return self.bin[start:start + v["byteLength"]]

    def accessor(self, index: int, dequantize: bool = True) -> np.ndarray:
        """Accessor values; normalised integer accessors become floats unless ``dequantize`` is False."""
        acc = self.json["accessors"][index]
        dtype = DTYPE_OF_COMPONENT[acc["componentType"]]
        width = WIDTH_OF_TYPE[acc["type"]]
        if "bufferView" not in acc:  # KHR_draco_mesh_compression: decoded from the primitive's stream
            from tiles.draco import accessor_array

            arr = accessor_array(self, index)
            if arr is None:
                raise ValueError(f"accessor {index} has no bufferView and no Draco primitive")
            arr = np.asarray(arr).reshape(len(arr), width)
            if dequantize and acc.get("normalized"):
                arr = np.maximum(arr.astype(np.float64) / np.iinfo(dtype).max, -1.0)
            return arr[:, 0] if width == 1 else arr
        view = self.json["bufferViews"][acc["bufferView"]]
        stride = view.get("byteStride", dtype.itemsize * width)
        start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
        count = acc["count"]
        raw = np.frombuffer(self.bin, dtype=np.uint8, count=stride * (count - 1) + dtype.itemsize * width
                            if count else 0, offset=start)
        if stride == dtype.itemsize * width:
            arr = raw.view(dtype).reshape(count, width) if count else np.zeros((0, width), dtype)
        else:
            arr = np.lib.stride_tricks.as_strided(raw.view(dtype), shape=(count, width),
                                                  strides=(stride, dtype.itemsize)).copy()
        if dequantize and acc.get("normalized"):
            info = np.iinfo(dtype)
            arr = np.maximum(arr.astype(np.float64) / info.max, -1.0)
        return arr[:, 0] if width == 1 else arr

    def primitives(self) -> list[dict[str, Any]]:
        return [p for m in self.json.get("meshes", []) for p in m["primitives"]]

    def attribute(self, name: str, primitive: int = 0, dequantize: bool = True) -> np.ndarray:
        return self.accessor(self.primitives()[primitive]["attributes"][name], dequantize)

    def indices(self, primitive: int = 0) -> np.ndarray:
        return self.accessor(self.primitives()[primitive]["indices"]).astype(np.int64)

    def property_table(self, index: int = 0) -> dict[str, list[Any]]:
        """Decode a property table to python lists (noData values kept as written; a property
        the table omits comes back as its class noData/default for every row)."""
        ext = self.json["extensions"]["EXT_structural_metadata"]
        table = ext["propertyTables"][index]
        cls = ext["schema"]["classes"][table["class"]]["properties"]
        count = table["count"]
        out: dict[str, list[Any]] = {name: [cls[name].get("noData", cls[name].get("default"))] * count
                                     for name in cls if name not in table["properties"]}  # omitted
        for name, prop in table["properties"].items():
            kind = cls[name]["type"]
            values = self.view_bytes(prop["values"])
            if kind == "STRING":
                otype = METADATA_DTYPES[prop.get("stringOffsetType", "UINT32")]
                offsets = np.frombuffer(self.view_bytes(prop["stringOffsets"]), dtype=otype)
                out[name] = [values[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(count)]
            elif kind == "BOOLEAN":
                bits = np.unpackbits(np.frombuffer(values, np.uint8), bitorder="little")[:count]
                out[name] = [bool(b) for b in bits]
            else:
                dtype = METADATA_DTYPES[cls[name]["componentType"]]
                out[name] = np.frombuffer(values, dtype=dtype, count=count).tolist()
        return out


    # ---------------------------------------------------------------- scene traversal
    @staticmethod
    def node_matrix(node: dict[str, Any]) -> np.ndarray:
        """A node's local 4x4: ``matrix`` (column-major) or translation · rotation · scale."""
        if "matrix" in node:
            return column_major(node["matrix"])
        m = np.eye(4)
        rotation = quaternions_to_matrices(np.asarray([node.get("rotation", [0, 0, 0, 1])], np.float64))[0]
        m[:3, :3] = rotation * np.asarray(node.get("scale", [1, 1, 1]), dtype=np.float64)
        m[:3, 3] = node.get("translation", [0, 0, 0])
        return m

    def scene_nodes(self) -> Iterator[tuple[dict[str, Any], np.ndarray]]:
        """(node, node → glTF-space matrix) for every node of the default scene, parents first."""
        js = self.json
        scenes = js.get("scenes") or [{"nodes": list(range(len(js.get("nodes", []))))}]
        scene = scenes[js.get("scene", 0)] if scenes else {"nodes": []}
        stack = [(i, np.eye(4)) for i in scene.get("nodes", [])]
        while stack:
            idx, parent = stack.pop()
            node = js["nodes"][idx]
            m = parent @ self.node_matrix(node)
            yield node, m
            stack.extend((c, m) for c in node.get("children", []))

    def mesh_positions(self, mesh_index: int) -> tuple[np.ndarray, bool]:
        """POSITION of every primitive of a mesh as float64 (N,3), dequantized once (by
        :meth:`accessor`; Draco primitives decoded by DracoPy); ``exact`` is False when a
        primitive without bufferView could not be decoded and only gave its accessor min/max."""
        parts: list[np.ndarray] = []
        exact = True
        for prim in self.json["meshes"][mesh_index]["primitives"]:
            pos_idx = prim.get("attributes", {}).get("POSITION")
            if pos_idx is None:
                continue
            acc = self.json["accessors"][pos_idx]
            if "bufferView" not in acc and not _can_decode(prim):
                lo, hi = acc.get("min"), acc.get("max")
                if lo is not None and hi is not None and len(lo) == 3:
                    parts.append(box_corners(np.asarray(lo, float), np.asarray(hi, float)))
                    exact = False
                continue
            parts.append(np.asarray(self.accessor(pos_idx), dtype=np.float64).reshape(-1, 3))
        return (np.concatenate(parts) if parts else np.zeros((0, 3))), exact

    def instance_attributes(self, node: dict[str, Any]) -> dict[str, np.ndarray]:
        """``EXT_mesh_gpu_instancing`` TRANSLATION / ROTATION / SCALE of a node, as float64
        (dequantized once); empty when the node is not instanced."""
        attrs = node.get("extensions", {}).get("EXT_mesh_gpu_instancing", {}).get("attributes", {})
        return {key: np.asarray(self.accessor(attrs[key]), dtype=np.float64)
                for key in ("TRANSLATION", "ROTATION", "SCALE") if key in attrs}

    def scene_positions(self) -> tuple[np.ndarray, bool]:
        """All vertex positions of the default scene in glTF space (node transforms applied;
        GPU instances expanded on their mesh's bounds) and whether they are exact."""
        from tiles.instancing import placed_bounds

        pts: list[np.ndarray] = []
        exact = True
        for node, m in self.scene_nodes():
            if "mesh" not in node:
                continue
            verts, mesh_exact = self.mesh_positions(node["mesh"])
            exact &= mesh_exact
            if not len(verts):
                continue
            inst = self.instance_attributes(node)
            if inst:
                verts = placed_bounds(verts.min(axis=0), verts.max(axis=0), inst.get("TRANSLATION"),
                                      inst.get("ROTATION"), inst.get("SCALE"))
            pts.append(apply_matrix(m, verts))
        return (np.concatenate(pts) if pts else np.zeros((0, 3))), exact


def _can_decode(prim: dict[str, Any]) -> bool:
    if "KHR_draco_mesh_compression" not in prim.get("extensions", {}):
        return False
    try:
        import DracoPy  # noqa: F401
    except ImportError:
        return False
    return True


def read_glb(data: bytes) -> Glb:
    magic, version, length = struct.unpack_from("<III", data, 0)
    if magic != GLB_MAGIC or version != 2:
        raise ValueError("not a glb v2")
    if length != len(data):
        raise ValueError(f"glb header length {length} != {len(data)} bytes")
    js_len, js_type = struct.unpack_from("<II", data, 12)
    if js_type != CHUNK_JSON:
        raise ValueError("first glb chunk is not JSON")
    gltf = json.loads(data[20:20 + js_len])
    pos = 20 + js_len
    binary = b""
    if pos < len(data):
        bin_len, bin_type = struct.unpack_from("<II", data, pos)
        if bin_type != CHUNK_BIN:
            raise ValueError("second glb chunk is not BIN")
        binary = data[pos + 8:pos + 8 + bin_len]
    return Glb(gltf, binary)
