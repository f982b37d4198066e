"""Instanced 3D Model (i3dm, 3D Tiles 1.0) reader: header and feature table.

onemap writes instances as glb with ``EXT_mesh_gpu_instancing`` (:mod:`tiles.instancing`); an
i3dm writer would go here, beside its reader.
"""

from __future__ import annotations

import struct

from tiles.formats.common import ContentGeometry, no_geometry, table_json
from tiles.issues import ERROR, INFO

HEADER = 32


def i3dm_geometry(data: bytes) -> ContentGeometry:
    if len(data) < HEADER:
        return no_geometry([], "i3dm shorter than its 32-byte header")
    _, version, length, ft_json, ft_bin, bt_json, bt_bin, gltf_format = struct.unpack_from("<4s7I", data, 0)
    issues: list[tuple[str, str]] = []
    if length != len(data):
        issues.append((ERROR, f"i3dm byteLength {length} != file size {len(data)}"))
    ft = table_json(data, HEADER, ft_json, "i3dm feature table", issues)
    if not isinstance(ft.get("INSTANCES_LENGTH"), int):
        issues.append((ERROR, "i3dm feature table lacks INSTANCES_LENGTH"))
    issues.append((INFO, "i3dm content: bounding volume containment not checked"))
    return no_geometry(issues)
