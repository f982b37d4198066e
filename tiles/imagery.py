"""Imagery tile pyramids Cesium reads offline: TMS layout + ``tilemapresource.xml``.

Layout (the same as Cesium's bundled NaturalEarthII, so ``TileMapServiceImageryProvider``
reads it without options)::

    DIR/tilemapresource.xml     profile "geodetic" (WorldCRS84Quad, Cesium GeographicTilingScheme)
                                or "mercator" (WebMercatorQuad), bounding box in degrees
    DIR/imagery.json            the same for UrlTemplateImageryProvider: template, scheme, levels
    DIR/{z}/{x}/{y}.{ext}       y counted from the south (TMS), z = the TMS's own zoom levels

Tiles are 256 px RGBA (PNG or WebP), transparent outside the data.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from PIL import Image

from core.errors import InputError

TILE_PX = 256
#: tiling scheme name (morecantile / OGC 2D TMS id) -> TMS profile name Cesium understands
PROFILES = {"WorldCRS84Quad": "geodetic", "WebMercatorQuad": "mercator"}
MIME = {"png": "image/png", "webp": "image/webp"}


@dataclass
class PyramidInfo:
    scheme: str
    fmt: str
    minzoom: int
    maxzoom: int
    bounds_lonlat: tuple[float, float, float, float]
    tiles: int = 0
    bytes: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "imagery",
            "scheme": self.scheme,
            "profile": PROFILES[self.scheme],
            "format": self.fmt,
            "tiles": "{z}/{x}/{reverseY}." + self.fmt,
            "tile_size": TILE_PX,
            "minzoom": self.minzoom,
            "maxzoom": self.maxzoom,
            "bounds": [round(v, 9) for v in self.bounds_lonlat],
            "tile_count": self.tiles,
            "bytes": self.bytes,
        }


def encode_tile(rgb: np.ndarray, mask: np.ndarray, fmt: str, quality: int = 82) -> bytes:
    """(3, h, w) uint8 + (h, w) mask (0 = no data) -> PNG/WebP bytes with alpha."""
    rgba = np.dstack([np.moveaxis(rgb[:3], 0, -1), mask.astype(np.uint8)])
    img = Image.fromarray(np.ascontiguousarray(rgba), "RGBA")
    buf = io.BytesIO()
    if fmt == "webp":
        img.save(buf, "WEBP", quality=quality, method=0, exact=False)
    elif fmt == "png":
        img.save(buf, "PNG", compress_level=6)
    else:
        raise InputError(f"imagery format {fmt!r}: use png or webp")
    return buf.getvalue()


def decode_tile(data: bytes) -> np.ndarray:
    """Tile bytes -> (h, w, 4) uint8 RGBA."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"))


def units_per_pixel(tms: Any, z: int) -> float:
    return float(tms.matrix(z).cellSize)


def tilemapresource_xml(info: PyramidInfo, tms: Any, title: str) -> str:
    w, s, e, n = info.bounds_lonlat
    if info.scheme == "WorldCRS84Quad":
        ox, oy = -180.0, -90.0
    else:
        ox, oy = -20037508.342789244, -20037508.342789244
    sets = "".join(
        f'    <TileSet href="{z}" units-per-pixel="{units_per_pixel(tms, z):.14f}" order="{z}"/>\n'
        for z in range(info.minzoom, info.maxzoom + 1)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<TileMap version="1.0.0" tilemapservice="http://tms.osgeo.org/1.0.0">\n'
        f"  <Title>{title}</Title>\n  <Abstract></Abstract>\n"
        f"  <SRS>{'EPSG:4326' if info.scheme == 'WorldCRS84Quad' else 'EPSG:3857'}</SRS>\n"
        f'  <BoundingBox minx="{w:.9f}" miny="{s:.9f}" maxx="{e:.9f}" maxy="{n:.9f}"/>\n'
        f'  <Origin x="{ox}" y="{oy}"/>\n'
        f'  <TileFormat width="{TILE_PX}" height="{TILE_PX}" mime-type="{MIME[info.fmt]}" '
        f'extension="{info.fmt}"/>\n'
        f'  <TileSets profile="{PROFILES[info.scheme]}">\n{sets}  </TileSets>\n'
        "</TileMap>\n"
    )


def write_metadata(root: Path, info: PyramidInfo, tms: Any, title: str) -> None:
    (root / "tilemapresource.xml").write_text(tilemapresource_xml(info, tms, title), encoding="utf-8")
    (root / "imagery.json").write_bytes(orjson.dumps(info.to_json(), option=orjson.OPT_INDENT_2))


def tms_y(y_xyz: int, z: int, tms: Any) -> int:
    """Row counted from the top (OGC/XYZ) -> row counted from the bottom (TMS)."""
    return int(tms.matrix(z).matrixHeight) - 1 - int(y_xyz)


def validate_imagery(root: Path) -> list[str]:
    """Problems of an imagery folder (empty list = valid): metadata present and consistent, every
    level has tiles, tiles decode as 256 px RGBA-capable images of the declared format."""
    root = Path(root)
    problems: list[str] = []
    meta_path = root / "imagery.json"
    xml_path = root / "tilemapresource.xml"
    if not meta_path.exists() or not xml_path.exists():
        return [f"{root}: imagery.json or tilemapresource.xml missing"]
    meta = orjson.loads(meta_path.read_bytes())
    ext = meta.get("format")
    if ext not in MIME:
        problems.append(f"{meta_path}: format {ext!r} is not png/webp")
        return problems
    count = 0
    for z in range(int(meta["minzoom"]), int(meta["maxzoom"]) + 1):
        files = sorted((root / str(z)).glob(f"*/*.{ext}"))
        if not files:
            problems.append(f"{root}: level {z} has no tiles")
            continue
        count += len(files)
        for f in files[:: max(1, len(files) // 8)]:
            try:
                img = Image.open(f)
                if img.size != (TILE_PX, TILE_PX):
                    problems.append(f"{f}: {img.size} is not {TILE_PX} px")
                if img.format.lower() != ext:
                    problems.append(f"{f}: is {img.format}, not {ext}")
            except OSError as exc:
                problems.append(f"{f}: {exc}")
    if meta.get("tile_count") not in (None, count):
        problems.append(f"{meta_path}: tile_count {meta.get('tile_count')} but {count} tiles on disk")
    return problems
