"""A reality mesh of one block, laid out like a ContextCapture / DJI Terra OBJ export::

    clean/mesh/metadata.xml                      <SRS>EPSG:4548</SRS> <SRSOrigin>x,y,z</SRSOrigin>
    clean/mesh/Data/Tile_+000_+001/Tile_+000_+001.obj   (+ .mtl, Tile_+000_+001_0.jpg, _1.jpg)

The block is the ``MESH_BLOCK_M`` square of the district with the most roof area, cut into
``MESH_TILES`` x ``MESH_TILES`` tiles (index +000 at the south-west, x then y). Vertex
coordinates are EPSG:4548 metres minus SRSOrigin, z orthometric (1985 datum) minus its z.
Each tile is one surface of ground (a 1 m grid on the DEM) plus its buildings (walls from the
lowest ground point of the footprint, flat roofs at ``building_height``). Material ``_0`` is the
orthophoto cut to the tile (ground and roofs, planar UVs); material ``_1`` a simple facade
(walls, repeating UVs: one window bay is 1 x 1 in UV).
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import mapbox_earcut as earcut
import numpy as np
import shapely
from PIL import Image

from .common import CRS_4548, District
from .ortho import ORTHO_RES_M
from .terrain import sample_dem

MESH_BLOCK_M = 500.0
MESH_TILES = 4
GROUND_STEP_M = 2.0
BAY_M = (3.6, 3.0)  # facade UV repeat (along the wall, up)
JPEG_QUALITY = 85


def block_origin(d: District) -> tuple[float, float]:
    """Centre of the mesh block: on a 50 m grid, the block inside the district with the most roof
    area (a dense built-up block, away from the lake)."""
    b = d.buildings
    cent = shapely.get_coordinates(shapely.centroid(b.geometry.values))
    area = shapely.area(b.geometry.values)
    minx, miny, maxx, maxy = d.boundary.bounds
    half = MESH_BLOCK_M / 2
    best, best_area = None, -1.0
    inner = d.boundary.buffer(-half * 0.5)
    for y in np.arange(math.ceil(miny / 50) * 50, maxy, 50.0):
        for x in np.arange(math.ceil(minx / 50) * 50, maxx, 50.0):
            if not inner.contains(shapely.box(x - half, y - half, x + half, y + half)):
                continue
            sel = (np.abs(cent[:, 0] - x) < half) & (np.abs(cent[:, 1] - y) < half)
            a = float(area[sel].sum())
            if a > best_area:
                best, best_area = (float(x), float(y)), a
    if best is None:
        c = d.boundary.centroid
        best = (round(c.x / 50) * 50.0, round(c.y / 50) * 50.0)
    return best


def _dem_bilinear(d: District, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    arr, tr = d.dem
    fc = (x - tr.c) / tr.a - 0.5
    fr = (y - tr.f) / tr.e - 0.5
    c0 = np.clip(np.floor(fc).astype(int), 0, arr.shape[1] - 2)
    r0 = np.clip(np.floor(fr).astype(int), 0, arr.shape[0] - 2)
    tx, ty = np.clip(fc - c0, 0, 1), np.clip(fr - r0, 0, 1)
    a = arr.astype(float)
    top = a[r0, c0] * (1 - tx) + a[r0, c0 + 1] * tx
    bot = a[r0 + 1, c0] * (1 - tx) + a[r0 + 1, c0 + 1] * tx
    return top * (1 - ty) + bot * ty


def facade_texture() -> bytes:
    """256 x 256 JPEG: one window bay (plaster, a window, a floor band)."""
    img = np.empty((256, 256, 3), np.uint8)
    img[:] = (214, 204, 188)
    img[40:200, 50:206] = (70, 88, 104)  # window
    img[40:200, 124:132] = (200, 200, 196)  # mullion
    img[232:256] = (186, 176, 162)  # floor band
    rng = np.random.default_rng(11)
    noise = rng.integers(-6, 7, (256, 256, 1))
    img = np.clip(img.astype(int) + noise, 0, 255).astype(np.uint8)
    return _jpeg(img)


def _jpeg(rgb_hwc: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb_hwc).save(buf, "JPEG", quality=JPEG_QUALITY, optimize=False)
    return buf.getvalue()


def _ortho_crop(rgb: np.ndarray, tr, box: tuple[float, float, float, float]) -> np.ndarray:
    minx, miny, maxx, maxy = box
    c0 = int(round((minx - tr.c) / tr.a))
    c1 = int(round((maxx - tr.c) / tr.a))
    r0 = int(round((maxy - tr.f) / tr.e))
    r1 = int(round((miny - tr.f) / tr.e))
    return np.ascontiguousarray(np.moveaxis(rgb[:, r0:r1, c0:c1], 0, -1))


def _ground(d: District, box) -> tuple[np.ndarray, np.ndarray]:
    minx, miny, maxx, maxy = box
    xs = np.arange(minx, maxx + 1e-6, GROUND_STEP_M)
    ys = np.arange(miny, maxy + 1e-6, GROUND_STEP_M)
    gx, gy = np.meshgrid(xs, ys)
    z = _dem_bilinear(d, gx.ravel(), gy.ravel())
    v = np.column_stack([gx.ravel(), gy.ravel(), z])
    nx = len(xs)
    i = np.arange(len(ys) - 1)[:, None] * nx + np.arange(nx - 1)[None, :]
    i = i.ravel()
    f = np.vstack([np.column_stack([i, i + 1, i + nx + 1]), np.column_stack([i, i + nx + 1, i + nx])])
    return v, f


def _building(poly, base: float, top: float):
    """(roof vertices, roof faces, wall vertices, wall uv, wall faces) of one extruded footprint."""
    poly = shapely.geometry.polygon.orient(poly)
    rings = [np.asarray(poly.exterior.coords)[:-1]] + [np.asarray(r.coords)[:-1] for r in poly.interiors]
    flat = np.vstack(rings)
    ends = np.cumsum([len(r) for r in rings]).astype(np.uint32)
    tri = earcut.triangulate_float64(flat, ends).reshape(-1, 3)
    roof_v = np.column_stack([flat, np.full(len(flat), top)])
    wv, wuv, wf = [], [], []
    n = 0
    for ring in rings:
        a = ring
        b = np.roll(ring, -1, axis=0)
        seg = np.hypot(*(b - a).T)
        for p, q, ln in zip(a, b, seg, strict=True):
            if ln < 1e-3:
                continue
            wv.append([[p[0], p[1], base], [q[0], q[1], base], [q[0], q[1], top], [p[0], p[1], top]])
            u1, v1 = ln / BAY_M[0], (top - base) / BAY_M[1]
            wuv.append([[0, 0], [u1, 0], [u1, v1], [0, v1]])
            wf.append([[n, n + 1, n + 2], [n, n + 2, n + 3]])
            n += 4
    if not wv:
        return roof_v, tri, np.zeros((0, 3)), np.zeros((0, 2)), np.zeros((0, 3), int)
    return roof_v, tri, np.vstack(wv), np.vstack(wuv), np.vstack(wf)


def _fmt(rows: np.ndarray, prefix: str, fmt: str, per_line: int | None = None) -> str:
    if len(rows) == 0:
        return ""
    line = prefix + " " + " ".join([fmt] * (per_line or rows.shape[1])) + "\n"
    return "".join(line % tuple(r) for r in rows.tolist())


def write(d: District, out: Path, ortho_rgb: np.ndarray, ortho_tr) -> dict:
    """Write ``out`` (the ``clean/mesh`` folder); returns counts."""
    out = Path(out)
    cx, cy = block_origin(d)
    origin = (cx, cy, 0.0)
    half = MESH_BLOCK_M / 2
    step = MESH_BLOCK_M / MESH_TILES
    b = d.buildings
    heights = np.asarray(d.extras["building_height"], float)
    cent = shapely.get_coordinates(shapely.centroid(b.geometry.values))
    facade = facade_texture()
    counts = {"tiles": 0, "triangles": 0, "vertices": 0}
    for j in range(MESH_TILES):
        for i in range(MESH_TILES):
            name = f"Tile_+{i:03d}_+{j:03d}"
            box = (cx - half + i * step, cy - half + j * step, cx - half + (i + 1) * step,
                   cy - half + (j + 1) * step)
            inside = np.flatnonzero((cent[:, 0] >= box[0]) & (cent[:, 0] < box[2]) & (cent[:, 1] >= box[1])
                                    & (cent[:, 1] < box[3]))
            gv, gf = _ground(d, box)
            tex_box = list(box)
            parts0_v, parts0_f = [gv], [gf]
            wall_v, wall_uv, wall_f = [], [], []
            n0, n1 = len(gv), 0
            for k in inside:
                g = b.geometry.values[k]
                ring = shapely.get_coordinates(g.exterior)
                base = float(sample_dem(d, ring[:, 0], ring[:, 1]).min())
                rv, rf, wv, wuv, wf = _building(g, base - 0.3, base + heights[k])
                parts0_v.append(rv)
                parts0_f.append(rf + n0)
                n0 += len(rv)
                wall_v.append(wv)
                wall_uv.append(wuv)
                wall_f.append(wf + n1)
                n1 += len(wv)
                gb = g.bounds
                tex_box = [min(tex_box[0], gb[0]), min(tex_box[1], gb[1]), max(tex_box[2], gb[2]),
                           max(tex_box[3], gb[3])]
            # texture extent on the orthophoto's pixel grid
            tex_box = [math.floor(tex_box[0] / ORTHO_RES_M) * ORTHO_RES_M,
                       math.floor(tex_box[1] / ORTHO_RES_M) * ORTHO_RES_M,
                       math.ceil(tex_box[2] / ORTHO_RES_M) * ORTHO_RES_M,
                       math.ceil(tex_box[3] / ORTHO_RES_M) * ORTHO_RES_M]
            v0 = np.vstack(parts0_v)
            f0 = np.vstack(parts0_f)
            uv0 = np.column_stack([(v0[:, 0] - tex_box[0]) / (tex_box[2] - tex_box[0]),
                                   (v0[:, 1] - tex_box[1]) / (tex_box[3] - tex_box[1])])
            v1 = np.vstack(wall_v) if wall_v else np.zeros((0, 3))
            uv1 = np.vstack(wall_uv) if wall_uv else np.zeros((0, 2))
            f1 = np.vstack(wall_f) if wall_f else np.zeros((0, 3), int)
            folder = out / "Data" / name
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{name}_0.jpg").write_bytes(_jpeg(_ortho_crop(ortho_rgb, ortho_tr, tex_box)))
            (folder / f"{name}_1.jpg").write_bytes(facade)
            (folder / f"{name}.mtl").write_text(
                "".join(f"newmtl {name}_{m}\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nd 1\nillum 1\nmap_Kd {name}_{m}.jpg\n\n"
                        for m in (0, 1)), encoding="ascii")
            verts = np.vstack([v0, v1]) - np.array(origin)
            uvs = np.vstack([uv0, uv1])
            f0o = f0 + 1
            f1o = f1 + 1 + len(v0)
            text = [f"# onemap sample generator: reality mesh tile {name}\nmtllib {name}.mtl\n",
                    _fmt(verts, "v", "%.3f"), _fmt(uvs, "vt", "%.5f"),
                    f"usemtl {name}_0\n", _fmt(np.repeat(f0o, 2, axis=1), "f", "%d/%d", 3),
                    f"usemtl {name}_1\n", _fmt(np.repeat(f1o, 2, axis=1), "f", "%d/%d", 3)]
            (folder / f"{name}.obj").write_text("".join(text), encoding="ascii")
            counts["tiles"] += 1
            counts["triangles"] += len(f0) + len(f1)
            counts["vertices"] += len(verts)
    (out / "metadata.xml").write_text(
        '<?xml version="1.0" encoding="utf-8"?>\n<ModelMetadata version="1">\n'
        "\t<!--Spatial Reference System-->\n"
        f"\t<SRS>{CRS_4548}</SRS>\n"
        "\t<!--Origin in Spatial Reference System-->\n"
        f"\t<SRSOrigin>{origin[0]:.0f},{origin[1]:.0f},{origin[2]:.0f}</SRSOrigin>\n"
        "\t<Texture>\n\t\t<ColorSource>Visible</ColorSource>\n\t</Texture>\n</ModelMetadata>\n",
        encoding="utf-8")
    return counts
