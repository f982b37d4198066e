"""Point Cloud (pnts, 3D Tiles 1.0) reader: header, feature table, float or quantized positions.

The pnts tiles of ``onemap tiles pointcloud`` are written by py3dtiles' converter
(:mod:`pipelines.pointcloud`); a pnts writer of our own would go here, beside its reader.
"""

from __future__ import annotations

import struct

import numpy as np

from tiles.formats.common import ContentGeometry, no_geometry, table_json
from tiles.issues import ERROR

HEADER = 28


def pnts_geometry(data: bytes) -> ContentGeometry:
    issues: list[tuple[str, str]] = []
    if len(data) < HEADER:
        return no_geometry([], "pnts shorter than its 28-byte header")
    _, version, length, ft_json, ft_bin, bt_json, bt_bin = struct.unpack_from("<4s6I", data, 0)
    if version != 1:
        issues.append((ERROR, f"pnts version {version} != 1"))
    if length != len(data):
        issues.append((ERROR, f"pnts byteLength {length} != file size {len(data)}"))
    if HEADER + ft_json + ft_bin + bt_json + bt_bin > len(data):
        return no_geometry(issues, "pnts table lengths run past the end")
    ft = table_json(data, HEADER, ft_json, "pnts feature table", issues)
    table_json(data, HEADER + ft_json + ft_bin, bt_json, "pnts batch table", issues)
    n = ft.get("POINTS_LENGTH")
    if not isinstance(n, int) or n < 0:
        return no_geometry(issues, "pnts feature table lacks POINTS_LENGTH")
    body = HEADER + ft_json
    if "POSITION" in ft:
        off = ft["POSITION"].get("byteOffset", 0)
        if off + 12 * n > ft_bin:
            return no_geometry(issues, "pnts POSITION runs past the binary body")
        pts = np.frombuffer(data, dtype="<f4", count=3 * n, offset=body + off).reshape(-1, 3).astype(float)
    elif "POSITION_QUANTIZED" in ft:
        off = ft["POSITION_QUANTIZED"].get("byteOffset", 0)
        if off + 6 * n > ft_bin:
            return no_geometry(issues, "pnts POSITION_QUANTIZED runs past the binary body")
        if "QUANTIZED_VOLUME_OFFSET" not in ft or "QUANTIZED_VOLUME_SCALE" not in ft:
            return no_geometry(issues, "pnts quantized positions without QUANTIZED_VOLUME_OFFSET/SCALE")
        q = np.frombuffer(data, dtype="<u2", count=3 * n, offset=body + off).reshape(-1, 3).astype(float)
        scale, offset = np.asarray(ft["QUANTIZED_VOLUME_SCALE"]), np.asarray(ft["QUANTIZED_VOLUME_OFFSET"])
        pts = q / 65535.0 * scale + offset
    else:
        return no_geometry(issues, "pnts has neither POSITION nor POSITION_QUANTIZED")
    if "RTC_CENTER" in ft:
        pts = pts + np.asarray(ft["RTC_CENTER"], dtype=np.float64)
    return ContentGeometry(pts, issues)
