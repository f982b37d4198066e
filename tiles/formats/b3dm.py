"""Batched 3D Model (b3dm, 3D Tiles 1.0) reader: header, feature/batch tables, embedded glb.

onemap writes glb content (3D Tiles 1.1), not b3dm; a b3dm writer would go here, beside its reader.
"""

from __future__ import annotations

import struct

import numpy as np

from tiles.formats.common import ContentGeometry, no_geometry, table_json
from tiles.formats.glb import READ_ERRORS, glb_positions
from tiles.gltf_read import read_glb
from tiles.issues import ERROR, WARNING
from tiles.volumes import Y_UP_TO_Z_UP, apply_matrix

HEADER = 28


def b3dm_geometry(data: bytes) -> ContentGeometry:
    issues: list[tuple[str, str]] = []
    if len(data) < HEADER:
        return no_geometry([], "b3dm shorter than its 28-byte header")
    _, version, length, ft_json, ft_bin, bt_json, bt_bin = struct.unpack_from("<4s6I", data, 0)
    if version != 1:
        issues.append((ERROR, f"b3dm version {version} != 1"))
    if length != len(data):
        issues.append((ERROR, f"b3dm byteLength {length} != file size {len(data)}"))
    glb_start = HEADER + ft_json + ft_bin + bt_json + bt_bin
    if glb_start > len(data):
        return no_geometry(issues, "b3dm table lengths run past the end")
    for name, off in (("feature table JSON", HEADER + ft_json),
                      ("batch table", HEADER + ft_json + ft_bin + bt_json), ("glb", glb_start)):
        if off % 8:
            issues.append((WARNING, f"b3dm {name} section ends/starts at byte {off}, not 8-byte aligned"))
    ft = table_json(data, HEADER, ft_json, "b3dm feature table", issues)
    bt = table_json(data, HEADER + ft_json + ft_bin, bt_json, "b3dm batch table", issues)
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
    except READ_ERRORS as exc:
        return no_geometry(issues, f"b3dm glb unreadable: {exc}")
    geo.points = apply_matrix(Y_UP_TO_Z_UP, geo.points)
    rtc = ft.get("RTC_CENTER")
    if rtc is not None:
        geo.points = geo.points + np.asarray(rtc, dtype=np.float64)
    if batch_length is not None:
        g = read_glb(data[glb_start:])
        for prim in g.primitives():
            acc = prim.get("attributes", {}).get("_BATCHID")
            if acc is not None:
                ids = np.asarray(g.accessor(acc))
                if len(ids) and ids.max() >= batch_length:
                    issues.append((ERROR, f"b3dm _BATCHID {int(ids.max())} >= BATCH_LENGTH {batch_length}"))
    geo.issues = issues + geo.issues
    return geo
