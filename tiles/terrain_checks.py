"""Quantized-mesh terrain checks (a directory with ``layer.json``).

- the layer.json fields Cesium reads; availability rectangles inside the tiling scheme, parents
  of available tiles available, level 0 present;
- every available tile present and decodable (:func:`tiles.terrain.decode_tile`), with edge
  lists on the right borders, the extensions layer.json announces, a bounding sphere that holds
  its vertices, and heights within an expected ellipsoidal range (a parameter, or layer.json's
  ``onemap`` block).
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from tiles.issues import ERROR, WARNING, ValidationReport

TERRAIN_EXTENSIONS = {"octvertexnormals": 1, "vertexnormals": 1, "watermask": 2, "metadata": 4}


def expected_height_range(layer: dict[str, Any],
                          height_range: tuple[float, float] | None) -> tuple[float, float] | None:
    """The ellipsoidal height range the tiles must stay in: the caller's (e.g. from the DEM the
    terrain was built from, see :func:`pipelines.dem.ellipsoidal_height_range`), else the one
    layer.json's ``onemap`` block records (± 0.5 m)."""
    if height_range is not None:
        return float(height_range[0]), float(height_range[1])
    meta = layer.get("onemap", {})
    rng = meta.get("height_range_ellipsoidal") if isinstance(meta, dict) else None
    if isinstance(rng, list) and len(rng) == 2:
        return float(rng[0]) - 0.5, float(rng[1]) + 0.5
    return None


def validate_terrain(layer_path: Path, report: ValidationReport, *,
                     height_range: tuple[float, float] | None = None) -> None:
    """Check a quantized-mesh directory (its ``layer.json`` and every available tile);
    ``height_range`` (min, max ellipsoidal metres) bounds the tile heights."""
    from tiles.terrain import EXT_OCT_NORMALS, EXT_WATERMASK, QMAX, decode_tile, tile_bounds

    issue = report.add

    try:
        layer = json.loads(layer_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        issue(ERROR, layer_path, f"cannot read layer.json: {exc}")
        return
    fmt = layer.get("format", "quantized-mesh-1.0")
    if not isinstance(fmt, str) or not fmt.startswith("quantized-mesh-1."):
        issue(ERROR, layer_path, f"format {fmt!r} is not quantized-mesh-1.x")
    tiles = layer.get("tiles")
    if not (isinstance(tiles, list) and tiles and isinstance(tiles[0], str)
            and all(k in tiles[0] for k in ("{z}", "{x}", "{y}"))):
        issue(ERROR, layer_path, "tiles must be a list of URL templates with {z}, {x} and {y}")
        return
    if layer.get("scheme", "tms") != "tms":
        issue(ERROR, layer_path, f"scheme {layer.get('scheme')!r}: Cesium reads only 'tms'")
    projection = layer.get("projection", "EPSG:4326")
    if projection not in ("EPSG:4326", "EPSG:3857"):
        issue(ERROR, layer_path, f"projection {projection!r} is neither EPSG:4326 nor EPSG:3857")
    extensions = layer.get("extensions", [])
    unknown = [e for e in extensions if e not in TERRAIN_EXTENSIONS]
    if unknown:
        issue(WARNING, layer_path, f"unknown extensions {unknown}")
    if not isinstance(layer.get("version", "1.0.0"), str):
        issue(ERROR, layer_path, "version must be a string")
    bounds = layer.get("bounds", [-180, -90, 180, 90])
    if not (isinstance(bounds, list) and len(bounds) == 4
            and bounds[0] < bounds[2] and bounds[1] < bounds[3]):
        issue(ERROR, layer_path, f"bounds {bounds!r} is not [west, south, east, north]")
    available = layer.get("available")
    if not isinstance(available, list) or not available:
        issue(ERROR, layer_path, "no 'available' ranges: Cesium would assume every tile exists")
        return
    if "maxzoom" in layer and layer["maxzoom"] != len(available) - 1:
        issue(WARNING, layer_path, f"maxzoom {layer['maxzoom']} != last available level {len(available) - 1}")
    level0_x = 2 if projection == "EPSG:4326" else 1
    avail: list[set[tuple[int, int]]] = []
    for z, rects in enumerate(available):
        level: set[tuple[int, int]] = set()
        nx, ny = level0_x << z, 1 << z
        for r in rects:
            try:
                x0, y0, x1, y1 = int(r["startX"]), int(r["startY"]), int(r["endX"]), int(r["endY"])
            except (KeyError, TypeError, ValueError):
                issue(ERROR, layer_path, f"available[{z}]: bad rectangle {r!r}")
                continue
            if not (0 <= x0 <= x1 < nx and 0 <= y0 <= y1 < ny):
                issue(ERROR, layer_path, f"available[{z}] {r} outside the {nx}x{ny} tiles of level {z}")
                continue
            level.update((x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1))
        avail.append(level)
    if len(avail[0]) < level0_x:
        issue(WARNING, layer_path, "not every level-0 tile is available: Cesium requests them all")
    hrange = expected_height_range(layer, height_range)
    template = urlsplit(tiles[0]).path
    version = str(layer.get("version", "1.0.0"))
    for z, level in enumerate(avail):
        for x, y in sorted(level):
            if z > 0 and (x // 2, y // 2) not in avail[z - 1]:
                issue(ERROR, layer_path, f"tile {z}/{x}/{y} is available but its parent is not: unreachable")
            rel = template.replace("{z}", str(z)).replace("{x}", str(x)).replace("{y}", str(y))
            tile_path = layer_path.parent / rel.replace("{version}", version)
            if not tile_path.is_file():
                issue(ERROR, tile_path, "declared available in layer.json but missing")
                continue
            report.terrain_tiles += 1
            try:
                t = decode_tile(tile_path.read_bytes())
            except (ValueError, OSError, struct.error, EOFError, zlib.error) as exc:
                issue(ERROR, tile_path, f"cannot decode quantized-mesh tile: {exc}")
                continue
            nv = len(t.u)
            problems = []
            if nv == 0 or len(t.triangles) == 0:
                problems.append("no vertices or no triangles")
            else:
                if min(t.u.min(), t.v.min(), t.h.min()) < 0 or max(t.u.max(), t.v.max(), t.h.max()) > QMAX:
                    problems.append("u/v/height outside 0..32767")
                if t.triangles.min() < 0 or t.triangles.max() >= nv:
                    problems.append("triangle indices outside the vertex list")
                for name, idx, coord, value in (("west", t.west, t.u, 0), ("south", t.south, t.v, 0),
                                                ("east", t.east, t.u, QMAX), ("north", t.north, t.v, QMAX)):
                    if len(idx) == 0:
                        problems.append(f"no {name} edge vertices (no skirt: cracks)")
                    elif idx.max() >= nv or np.any(coord[idx] != value):
                        problems.append(f"{name} edge indices are not on the {name} border")
            for name in extensions:
                ext_id = TERRAIN_EXTENSIONS.get(name)
                if ext_id in (EXT_OCT_NORMALS, EXT_WATERMASK) and ext_id not in t.extensions:
                    problems.append(f"extension {name} announced in layer.json but absent")
            if EXT_OCT_NORMALS in t.extensions and len(t.extensions[EXT_OCT_NORMALS]) != 2 * nv:
                problems.append("octvertexnormals length != 2 x vertex count")
            if EXT_WATERMASK in t.extensions and len(t.extensions[EXT_WATERMASK]) not in (1, 65536):
                problems.append("watermask is neither 1 nor 65536 bytes")
            if nv:
                h = t.heights
                if hrange is not None and (h.min() < hrange[0] or h.max() > hrange[1]):
                    problems.append(f"heights {h.min():.2f}..{h.max():.2f} m outside the expected "
                                    f"ellipsoidal range {hrange[0]:.2f}..{hrange[1]:.2f} m")
                elif h.min() < -500 or h.max() > 9000:
                    problems.append(f"implausible heights {h.min():.1f}..{h.max():.1f} m")
                if projection == "EPSG:4326":
                    from quantized_mesh_encoder.ecef import to_ecef

                    lon, lat = t.lonlat(tile_bounds(z, x, y))
                    ecef = to_ecef(np.column_stack([lon, lat, h]))
                    dist = np.linalg.norm(ecef - np.asarray(t.sphere_center), axis=1).max()
                    if dist > t.sphere_radius + 1.0:
                        problems.append(f"bounding sphere (r {t.sphere_radius:.1f} m) misses vertices by "
                                        f"{dist - t.sphere_radius:.1f} m")
            for p in problems:
                issue(ERROR, tile_path, p)
