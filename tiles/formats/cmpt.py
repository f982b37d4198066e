"""Composite (cmpt, 3D Tiles 1.0) reader: inner tiles read by their own readers.

onemap writes no composites; a cmpt writer would go here, beside its reader.
"""

from __future__ import annotations

import struct

import numpy as np

from tiles.formats.common import ContentGeometry, no_geometry
from tiles.issues import ERROR

HEADER = 16


def cmpt_geometry(data: bytes) -> ContentGeometry:
    from tiles.formats import content_geometry  # inner tiles: any format

    if len(data) < HEADER:
        return no_geometry([], "cmpt shorter than its 16-byte header")
    _, version, length, count = struct.unpack_from("<4s3I", data, 0)
    issues: list[tuple[str, str]] = []
    if length != len(data):
        issues.append((ERROR, f"cmpt byteLength {length} != file size {len(data)}"))
    pos, pts = HEADER, []
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
