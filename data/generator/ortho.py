"""The district's orthophoto: an RGB Cloud-Optimised GeoTIFF (EPSG:4548, 0.25 m) rendered from the
generator's own layers, so imagery and vectors agree to the pixel.

Drawing order (later wins): paved ground, green, water, sidewalks, carriageways, lane markings,
shadows (darken what is under them), tree crowns, roofs. Roofs are coloured by building use
(:data:`ROOF_RGB`), carriageways dark asphalt with white dashed lane lines and a yellow centre
line on two-way streets. The sun is in the south-east (azimuth 150°, elevation 50°), so shadows
fall north-west. Texture is a fixed tiled noise pattern: byte-identical for a seed.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import rasterio
import shapely
from rasterio.features import rasterize
from rasterio.transform import from_origin

from .common import CRS_4548, District, rng_for
from .roads import CLASS_SPEC

ORTHO_RES_M = 0.25
ORTHO_MARGIN_M = 60.0
SUN_AZIMUTH_DEG = 150.0
SUN_ELEVATION_DEG = 50.0
# class id -> RGB (index = class id)
PALETTE = {
    "ground": (168, 162, 148),
    "green": (96, 138, 66),
    "water": (52, 88, 112),
    "sidewalk": (182, 176, 166),
    "asphalt": (68, 70, 74),
    "marking_white": (236, 236, 230),
    "marking_yellow": (222, 186, 58),
    "crown": (58, 104, 48),
}
ROOF_RGB = {
    "residential": (205, 112, 84),
    "commercial": (120, 150, 190),
    "office": (150, 170, 190),
    "school": (214, 160, 110),
    "hospital": (236, 236, 236),
    "market": (190, 120, 160),
    "public": (200, 190, 120),
    "industrial": (150, 150, 146),
    "courtyard_house": (96, 96, 104),
}
_CLASS_NAMES = list(PALETTE) + [f"roof_{u}" for u in ROOF_RGB]
CLASS = {name: i + 1 for i, name in enumerate(_CLASS_NAMES)}
SHADOW_FACTOR = 0.58
NOISE_LEVELS = 16
NOISE_STEP = 2.0  # grey levels between noise levels


def ortho_grid(boundary) -> tuple[float, float, int, int]:
    """(x0, y_top, ncols, nrows) of the orthophoto: the district's bounds + margin, whole metres."""
    minx, miny, maxx, maxy = boundary.bounds
    x0 = math.floor(minx - ORTHO_MARGIN_M)
    y0 = math.floor(miny - ORTHO_MARGIN_M)
    x1 = math.ceil(maxx + ORTHO_MARGIN_M)
    y1 = math.ceil(maxy + ORTHO_MARGIN_M)
    return float(x0), float(y1), int(round((x1 - x0) / ORTHO_RES_M)), int(round((y1 - y0) / ORTHO_RES_M))


def shadow_offset(height: np.ndarray) -> np.ndarray:
    """(dx, dy) in metres of the shadow of a point `height` m above the ground."""
    az = math.radians(SUN_AZIMUTH_DEG)
    length = np.asarray(height, float) / math.tan(math.radians(SUN_ELEVATION_DEG))
    return np.column_stack([-math.sin(az) * length, -math.cos(az) * length])


def _dashes(lines: np.ndarray, dash: float, gap: float) -> list:
    out = []
    for line in lines:
        n = int(line.length // (dash + gap))
        if n < 1:
            continue
        s = np.arange(n) * (dash + gap)
        a = shapely.line_interpolate_point(line, s)
        b = shapely.line_interpolate_point(line, s + dash)
        out.extend(shapely.linestrings(np.stack([shapely.get_coordinates(a), shapely.get_coordinates(b)], axis=1)))
    return out


def _markings(roads) -> tuple[list, list]:
    """(white dashed lane lines, yellow centre lines) as LineStrings."""
    white, yellow = [], []
    geoms = roads.geometry.values
    lanes = roads["lanes"].to_numpy()
    width = roads["width"].to_numpy()
    cls = roads["class"].to_numpy()
    for g, n, w, c in zip(geoms, lanes, width, cls, strict=True):
        if c == "service" or n < 2:
            continue
        lane_w = w / n
        yellow.append(g)
        half = n // 2
        offs = [k * lane_w for k in range(1, half)]
        for o in offs:
            for side in (o, -o):
                off = shapely.offset_curve(g, side)
                white.extend(_dashes(shapely.get_parts(off), 3.0, 6.0))
        # edge lines
        for side in (w / 2 - 0.3, -(w / 2 - 0.3)):
            white.extend(shapely.get_parts(shapely.offset_curve(g, side)))
    return white, yellow


def _noise(shape: tuple[int, int], seed: int) -> np.ndarray:
    """Noise level per pixel (uint16 in [0, NOISE_LEVELS)): a 512 x 512 tile repeated."""
    rng = rng_for(seed, "ortho-noise")
    t = rng.normal(0, 1.0, (512, 512))
    t = (t + np.roll(t, 1, 0) + np.roll(t, 1, 1)) / 1.7
    levels = np.clip(np.round(t * 2.5 + (NOISE_LEVELS - 1) / 2), 0, NOISE_LEVELS - 1).astype(np.uint16)
    reps = (math.ceil(shape[0] / 512), math.ceil(shape[1] / 512))
    return np.tile(levels, reps)[: shape[0], : shape[1]]


def render(d: District) -> tuple[np.ndarray, object]:
    """(rgb uint8 array (3, rows, cols), affine transform) of the district's orthophoto."""
    x0, y_top, ncols, nrows = ortho_grid(d.boundary)
    tr = from_origin(x0, y_top, ORTHO_RES_M, ORTHO_RES_M)
    shape = (nrows, ncols)
    roads = d.roads
    sidewalk = roads["_sidewalk"].to_numpy() if "_sidewalk" in roads else np.array(
        [CLASS_SPEC[c][2] for c in roads["class"]])
    carriage = shapely.buffer(roads.geometry.values, roads["width"].to_numpy() / 2, cap_style="flat")
    walks = shapely.buffer(roads.geometry.values, roads["width"].to_numpy() / 2 + sidewalk, cap_style="flat")
    white, yellow = _markings(roads)
    b = d.buildings
    heights = np.asarray(d.extras.get("building_height", np.full(len(b), 10.0)), float)
    foot = b.geometry.values
    offs = shadow_offset(heights)
    xy, idx = shapely.get_coordinates(foot, return_index=True)
    moved = shapely.set_coordinates(np.array(foot, dtype=object).copy(), xy + offs[idx])
    shadows = shapely.convex_hull(shapely.union(foot, moved))
    t = d.trees
    txy = shapely.get_coordinates(t.geometry.values)
    crowns = shapely.buffer(t.geometry.values, t["crown_diameter"].to_numpy() / 2, quad_segs=4)
    tree_shadows = shapely.buffer(shapely.points(txy + shadow_offset(t["height"].to_numpy() * 0.8)),
                                  t["crown_diameter"].to_numpy() / 2, quad_segs=4)
    shapes: list = []
    shapes += [(g, CLASS["green"]) for g in d.green.geometry.values]
    shapes += [(g, CLASS["water"]) for g in d.water.geometry.values]
    shapes += [(g, CLASS["sidewalk"]) for g in walks]
    shapes += [(g, CLASS["asphalt"]) for g in carriage]
    cls = rasterize(shapes, out_shape=shape, transform=tr, fill=CLASS["ground"], dtype="uint8")
    line_cls = rasterize([(g, 1) for g in white] + [(g, 2) for g in yellow], out_shape=shape, transform=tr,
                         fill=0, dtype="uint8", all_touched=False)
    on_road = cls == CLASS["asphalt"]
    cls[(line_cls == 1) & on_road] = CLASS["marking_white"]
    cls[(line_cls == 2) & on_road] = CLASS["marking_yellow"]
    del line_cls, on_road
    shade = rasterize([(g, 1) for g in shadows] + [(g, 1) for g in tree_shadows], out_shape=shape,
                      transform=tr, fill=0, dtype="uint8")
    use = b["use"].to_numpy()
    top = [(g, CLASS["crown"]) for g in crowns]
    top += [(g, CLASS[f"roof_{u}" if u in ROOF_RGB else "roof_public"]) for g, u in zip(foot, use, strict=True)]
    over = rasterize(top, out_shape=shape, transform=tr, fill=0, dtype="uint8")
    lit = over > 0
    cls[lit] = over[lit]
    shade[lit] = 0
    del over, lit
    # one uint8 look-up per band: index = (class + shaded * n_classes) * NOISE_LEVELS + noise level
    n_cls = len(CLASS) + 1
    base = np.zeros((n_cls, 3), np.float32)
    for name, i in CLASS.items():
        base[i] = PALETTE[name] if name in PALETTE else ROOF_RGB[name[5:]]
    shaded = np.concatenate([base, base * SHADOW_FACTOR])
    offsets = (np.arange(NOISE_LEVELS, dtype=np.float32) - (NOISE_LEVELS - 1) / 2) * NOISE_STEP
    lut = np.clip(np.round(shaded[:, None, :] + offsets[None, :, None]), 0, 255).astype(np.uint8)
    lut = lut.reshape(-1, 3)
    index = cls.astype(np.uint16)
    index += shade.astype(np.uint16) * n_cls
    index *= NOISE_LEVELS
    index += _noise(shape, d.seed)
    del cls, shade
    rgb = np.empty((3, nrows, ncols), np.uint8)
    for k in range(3):
        np.take(lut[:, k], index, out=rgb[k])
    return rgb, tr


def write_cog(path: Path, rgb: np.ndarray, transform) -> None:
    """RGB JPEG-in-TIFF COG (YCbCr, 512 px blocks, averaged overviews); deterministic bytes."""
    path = Path(path)
    if path.exists():
        path.unlink()
    profile = {
        "driver": "COG",
        "dtype": "uint8",
        "count": 3,
        "width": rgb.shape[2],
        "height": rgb.shape[1],
        "crs": CRS_4548,
        "transform": transform,
        "compress": "JPEG",
        "quality": 88,
        "blocksize": 512,
        "overview_resampling": "average",
        "photometric": "YCBCR",
        "num_threads": 2,
    }
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(rgb)
        ds.update_tags(TIFFTAG_DATETIME="2026:01:01 00:00:00")
