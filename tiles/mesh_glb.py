"""Textured reality-mesh content: one glb per tile, one primitive per part.

Positions float32 (glTF y-up, the tile frame), TEXCOORD_0 float32 with the part's texture as an
embedded JPEG (or PNG when it has transparency), or COLOR_0 (vertex colours), unlit materials
(``KHR_materials_unlit``: photogrammetry textures already carry the light), uint16/uint32
indices. Validator-clean with the Khronos glTF validator.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

from core.frames import enu_to_gltf
from tiles.gltf import ELEMENT_ARRAY_BUFFER, GlbBuilder
from tiles.mesh_lod import LodMesh

JPEG_QUALITY = 85


def encode_image(image: np.ndarray, quality: int = JPEG_QUALITY) -> tuple[bytes, str]:
    """(bytes, mime type): JPEG for opaque textures, PNG when alpha is used."""
    img = Image.fromarray(np.ascontiguousarray(image))
    buf = io.BytesIO()
    if img.mode == "RGBA" and (np.asarray(image)[..., 3] < 255).any():
        img.save(buf, "PNG", compress_level=6)
        return buf.getvalue(), "image/png"
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue(), "image/jpeg"


def encode_parts_glb(parts: Sequence[LodMesh], *, quality: int = JPEG_QUALITY) -> bytes:
    """Parts with ENU positions (tile frame, metres) -> glb bytes."""
    b = GlbBuilder()
    b.use_extension("KHR_materials_unlit")
    primitives = []
    for part in parts:
        if part.n_triangles == 0:
            continue
        pos = enu_to_gltf(np.asarray(part.positions, float)).astype(np.float32)
        attributes = {"POSITION": b.add_accessor(pos, minmax=True)}
        material: dict = {"pbrMetallicRoughness": {"metallicFactor": 0.0, "roughnessFactor": 1.0},
                          "extensions": {"KHR_materials_unlit": {}}, "doubleSided": True}
        if part.name:
            material["name"] = part.name
        if part.uv is not None and part.image is not None:
            attributes["TEXCOORD_0"] = b.add_accessor(np.asarray(part.uv, np.float32))
            data, mime = encode_image(part.image, quality)
            view = b.add_view(data)
            gl = b.gltf
            gl.setdefault("samplers", [{"magFilter": 9729, "minFilter": 9987, "wrapS": 10497, "wrapT": 10497}])
            gl.setdefault("images", []).append({"bufferView": view, "mimeType": mime})
            gl.setdefault("textures", []).append({"sampler": 0, "source": len(gl["images"]) - 1})
            material["pbrMetallicRoughness"]["baseColorTexture"] = {"index": len(gl["textures"]) - 1}
        else:
            material["pbrMetallicRoughness"]["baseColorFactor"] = [float(c) for c in part.color]
            if part.colors is not None:
                attributes["COLOR_0"] = b.add_accessor(np.asarray(part.colors, np.uint8), normalized=True)
        b.gltf.setdefault("materials", []).append(material)
        n = len(pos)
        idx = np.asarray(part.faces, np.uint16 if n < 65535 else np.uint32).reshape(-1)
        primitives.append({"attributes": attributes, "mode": 4,
                           "indices": b.add_accessor(idx, target=ELEMENT_ARRAY_BUFFER),
                           "material": len(b.gltf["materials"]) - 1})
    if not primitives:
        raise ValueError("no triangles in any part")
    b.gltf["meshes"] = [{"primitives": primitives}]
    b.gltf["nodes"] = [{"mesh": 0}]
    b.gltf["scenes"] = [{"nodes": [0]}]
    b.gltf["scene"] = 0
    return b.to_bytes()
