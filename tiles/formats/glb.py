"""glb content (3D Tiles 1.1): positions in the tile frame, metadata findings.

The writer is :mod:`tiles.gltf` (``encode_mesh_glb``) and :mod:`tiles.instancing`; this reads
what any producer wrote, through the same :class:`tiles.gltf_read.Glb`.
"""

from __future__ import annotations

import struct

import numpy as np

from tiles.draco import draco_issues
from tiles.formats.common import ContentGeometry, no_geometry
from tiles.gltf_read import read_glb
from tiles.metadata_checks import metadata_issues
from tiles.volumes import Y_UP_TO_Z_UP, apply_matrix

READ_ERRORS = (ValueError, KeyError, IndexError, TypeError, struct.error)


def glb_positions(data: bytes) -> ContentGeometry:
    """All vertex positions of a glb's default scene in glTF space (y-up; node transforms
    applied, GPU instances expanded on mesh bounds); metadata counts and Draco streams (decoded
    against their accessors, :func:`tiles.draco.draco_issues`) checked on the way."""
    glb = read_glb(data)
    points, exact = glb.scene_positions()
    return ContentGeometry(points, metadata_issues(glb) + draco_issues(glb), glb=data, exact=exact)


def glb_geometry(data: bytes) -> ContentGeometry:
    """A standalone glb content: positions z-up in the tile frame (``CESIUM_RTC`` applied)."""
    try:
        geo = glb_positions(data)
        rtc = read_glb(data).json.get("extensions", {}).get("CESIUM_RTC")
    except READ_ERRORS as exc:
        geo = no_geometry([], f"glb unreadable: {exc}")
        geo.glb = data
        return geo
    geo.points = apply_matrix(Y_UP_TO_Z_UP, geo.points)
    if rtc and "center" in rtc:
        geo.points = geo.points + np.asarray(rtc["center"], dtype=np.float64)
    return geo



