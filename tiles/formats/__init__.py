"""3D Tiles content formats, one module each (reader beside writer, as py3dtiles does):
``glb`` (1.1), ``b3dm``, ``pnts``, ``i3dm``, ``cmpt`` (1.0).

:func:`content_geometry` reads any of them by its magic: positions in the tile frame (z-up,
``RTC_CENTER`` / ``CESIUM_RTC`` applied) and header findings.
"""

from __future__ import annotations

from collections.abc import Callable

from tiles.formats.b3dm import b3dm_geometry
from tiles.formats.cmpt import cmpt_geometry
from tiles.formats.common import ContentGeometry, no_geometry
from tiles.formats.glb import glb_geometry, glb_positions
from tiles.formats.i3dm import i3dm_geometry
from tiles.formats.pnts import pnts_geometry

READERS: dict[bytes, Callable[[bytes], ContentGeometry]] = {
    b"b3dm": b3dm_geometry, b"pnts": pnts_geometry, b"cmpt": cmpt_geometry, b"i3dm": i3dm_geometry,
    b"glTF": glb_geometry,
}


def content_geometry(data: bytes) -> ContentGeometry:
    """Positions (tile frame) and header findings of a b3dm / pnts / cmpt / i3dm / glb content."""
    reader = READERS.get(data[:4])
    if reader is None:
        return no_geometry([], f"unknown content magic {data[:4]!r}")
    return reader(data)


__all__ = ["ContentGeometry", "b3dm_geometry", "cmpt_geometry", "content_geometry", "glb_geometry",
           "glb_positions", "i3dm_geometry", "pnts_geometry"]
