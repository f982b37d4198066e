"""Textured reality-mesh content: one glb per tile, one primitive per part.

Positions float32 (glTF y-up, the tile frame), TEXCOORD_0 float32 with the part's texture as an
embedded JPEG (or PNG when it has transparency), or COLOR_0 (vertex colours), unlit materials
(``KHR_materials_unlit``: photogrammetry textures already carry the light), uint16/uint32
indices. Validator-clean with the Khronos glTF validator.

``compress="draco"``: each primitive's POSITION, TEXCOORD_0 / COLOR_0 and indices go through
KHR_draco_mesh_compression (:func:`tiles.draco.add_draco_arrays`; required extension, no
uncompressed fallback); the textures stay JPEG/PNG buffer views.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

from core.frames import enu_to_gltf
from tiles.gltf import COMPRESSIONS, ELEMENT_ARRAY_BUFFER, GlbBuilder
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


def encode_parts_glb(parts: Sequence[LodMesh], *, quality: int = JPEG_QUALITY, compress: str = "none",
                     sizes: dict[str, int] | None = None) -> bytes:
    """Parts with ENU positions (tile frame, metres) -> glb bytes. ``sizes``, when given, receives
    ``image_bytes`` (the textures), ``geometry_bytes`` (the binary geometry as written: Draco
    streams, or the plain accessors' bytes) and ``plain_geometry_bytes`` (what the plain
    accessors take, in either mode; alignment padding not counted)."""
    if compress not in COMPRESSIONS:
        raise ValueError(f"compress must be one of {', '.join(COMPRESSIONS)}, got {compress!r}")
    b = GlbBuilder()
    b.use_extension("KHR_materials_unlit")
    primitives = []
    image_bytes = geometry_bytes = plain_bytes = 0
    for part in parts:
        if part.n_triangles == 0:
            continue
        pos = enu_to_gltf(np.asarray(part.positions, float)).astype(np.float32)
        material: dict = {"pbrMetallicRoughness": {"metallicFactor": 0.0, "roughnessFactor": 1.0},
                          "extensions": {"KHR_materials_unlit": {}}, "doubleSided": True}
        if part.name:
            material["name"] = part.name
        textured = part.uv is not None and part.image is not None
        uv = np.asarray(part.uv, np.float32) if textured else None
        colors = np.asarray(part.colors, np.uint8) if not textured and part.colors is not None else None
        n = len(pos)
        idx = np.asarray(part.faces, np.uint16 if n < 65535 else np.uint32).reshape(-1)
        plain = [pos.nbytes, idx.nbytes] + ([uv.nbytes] if uv is not None else []) + (
            [colors.nbytes] if colors is not None else [])
        plain_bytes += sum(plain)
        if compress == "draco":
            from tiles.draco import EXTENSION, add_draco_arrays

            primitive = add_draco_arrays(b, pos, idx, uv=uv, colors=colors)
            geometry_bytes += b.gltf["bufferViews"][primitive["extensions"][EXTENSION]["bufferView"]]["byteLength"]
        else:
            attributes = {"POSITION": b.add_accessor(pos, minmax=True)}
            if uv is not None:
                attributes["TEXCOORD_0"] = b.add_accessor(uv)
            if colors is not None:
                attributes["COLOR_0"] = b.add_accessor(colors, normalized=True)
            primitive = {"attributes": attributes, "mode": 4,
                         "indices": b.add_accessor(idx, target=ELEMENT_ARRAY_BUFFER)}
            geometry_bytes += sum(plain)
        if textured:
            data, mime = encode_image(part.image, quality)
            image_bytes += len(data)
            view = b.add_view(data)
            gl = b.gltf
            gl.setdefault("samplers", [{"magFilter": 9729, "minFilter": 9987, "wrapS": 10497, "wrapT": 10497}])
            gl.setdefault("images", []).append({"bufferView": view, "mimeType": mime})
            gl.setdefault("textures", []).append({"sampler": 0, "source": len(gl["images"]) - 1})
            material["pbrMetallicRoughness"]["baseColorTexture"] = {"index": len(gl["textures"]) - 1}
        else:
            material["pbrMetallicRoughness"]["baseColorFactor"] = [float(c) for c in part.color]
        b.gltf.setdefault("materials", []).append(material)
        primitive["material"] = len(b.gltf["materials"]) - 1
        primitives.append(primitive)
    if not primitives:
        raise ValueError("no triangles in any part")
    b.gltf["meshes"] = [{"primitives": primitives}]
    b.gltf["nodes"] = [{"mesh": 0}]
    b.gltf["scenes"] = [{"nodes": [0]}]
    b.gltf["scene"] = 0
    if sizes is not None:
        sizes.update(image_bytes=image_bytes, geometry_bytes=geometry_bytes, plain_geometry_bytes=plain_bytes)
    return b.to_bytes()
