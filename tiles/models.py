"""Schematic 3D template models, built procedurally with numpy (no external assets).

Every template is expressed in a local ENU frame: x east, y north, z up, metres, origin at
the base centre, *forward = +y (north)*: the side a bench is sat on, the face of a sign or a
signal head, the open side of a bus shelter, the direction a lamp arm reaches. Instances are
rotated by their heading (clockwise from true north) and placed by `tiles.instancing`.

Colours are per-vertex, linear RGBA (glTF ``COLOR_0``). Trees are crossed "单面片" billboard
planes with an alpha-masked crown texture generated here (PNG encoded with zlib).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache

import numpy as np

# ---------------------------------------------------------------------------------------------
# Mesh container and primitive solids
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TemplateMesh:
    """A triangle mesh in template ENU coordinates (origin base centre, forward +y)."""

    name: str
    positions: np.ndarray  # (V,3) float32, ENU metres
    normals: np.ndarray  # (V,3) float32, unit, ENU
    colors: np.ndarray  # (V,4) float32, linear RGBA
    indices: np.ndarray  # (3T,) uint32, counter-clockwise seen from outside
    texcoords: np.ndarray | None = None  # (V,2) float32, glTF convention (v down)
    texture_png: bytes | None = None
    alpha_cutoff: float | None = None
    double_sided: bool = False
    meta: dict[str, float] = field(default_factory=dict)

    @property
    def height(self) -> float:
        return float(self.positions[:, 2].max())

    @property
    def radius_xy(self) -> float:
        """Largest horizontal distance of a vertex from the origin (for bounding volumes)."""
        return float(np.hypot(self.positions[:, 0], self.positions[:, 1]).max())

    @property
    def triangle_count(self) -> int:
        return int(self.indices.size // 3)


def srgb_to_linear(rgb: Sequence[float]) -> np.ndarray:
    """sRGB 0..1 components → linear (glTF vertex colours and factors are linear)."""
    c = np.asarray(rgb, dtype=np.float64)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def hex_color(value: str, alpha: float = 1.0) -> np.ndarray:
    """'#rrggbb' → linear RGBA float32."""
    v = value.lstrip("#")
    rgb = [int(v[i : i + 2], 16) / 255.0 for i in (0, 2, 4)]
    return np.append(srgb_to_linear(rgb), alpha).astype(np.float32)


@dataclass(frozen=True)
class _Part:
    positions: np.ndarray
    normals: np.ndarray
    indices: np.ndarray
    color: np.ndarray


def _part(positions: np.ndarray, normals: np.ndarray, indices: np.ndarray, color: np.ndarray) -> _Part:
    return _Part(np.asarray(positions, np.float64), np.asarray(normals, np.float64),
                 np.asarray(indices, np.int64).reshape(-1), np.asarray(color, np.float32))


# unit cube faces: (normal, 4 corners CCW seen from outside) on [-0.5, 0.5]^2 x [0, 1]
_CUBE_FACES = (
    ((1, 0, 0), ((0.5, -0.5, 0), (0.5, 0.5, 0), (0.5, 0.5, 1), (0.5, -0.5, 1))),
    ((-1, 0, 0), ((-0.5, 0.5, 0), (-0.5, -0.5, 0), (-0.5, -0.5, 1), (-0.5, 0.5, 1))),
    ((0, 1, 0), ((0.5, 0.5, 0), (-0.5, 0.5, 0), (-0.5, 0.5, 1), (0.5, 0.5, 1))),
    ((0, -1, 0), ((-0.5, -0.5, 0), (0.5, -0.5, 0), (0.5, -0.5, 1), (-0.5, -0.5, 1))),
    ((0, 0, 1), ((-0.5, -0.5, 1), (0.5, -0.5, 1), (0.5, 0.5, 1), (-0.5, 0.5, 1))),
    ((0, 0, -1), ((-0.5, 0.5, 0), (0.5, 0.5, 0), (0.5, -0.5, 0), (-0.5, -0.5, 0))),
)
_CUBE_POS = np.array([c for _, cs in _CUBE_FACES for c in cs], dtype=np.float64)
_CUBE_NRM = np.repeat(np.array([n for n, _ in _CUBE_FACES], dtype=np.float64), 4, axis=0)
_CUBE_IDX = (np.arange(6)[:, None] * 4 + np.array([0, 1, 2, 0, 2, 3])[None, :]).reshape(-1)


def box(center_xy: tuple[float, float], z0: float, size: tuple[float, float, float], color: np.ndarray,
        yaw_deg: float = 0.0) -> _Part:
    """Flat-shaded box: base centre (x, y, z0), size (sx, sy, sz), optional yaw about z (CCW)."""
    pos = _CUBE_POS * np.asarray(size, float)
    nrm = _CUBE_NRM.copy()
    if yaw_deg:
        a = np.radians(yaw_deg)
        rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
        pos, nrm = pos @ rot.T, nrm @ rot.T
    pos = pos + np.array([center_xy[0], center_xy[1], z0])
    return _part(pos, nrm, _CUBE_IDX, color)


def cylinder(center_xy: tuple[float, float], z0: float, z1: float, radius: float, color: np.ndarray,
             segments: int = 8, radius_top: float | None = None, caps: bool = True) -> _Part:
    """Smooth-shaded vertical cylinder (or frustum/cone when ``radius_top`` differs)."""
    r1 = radius if radius_top is None else radius_top
    a = np.linspace(0.0, 2 * np.pi, segments, endpoint=False)
    ca, sa = np.cos(a), np.sin(a)
    cx, cy = center_xy
    bottom = np.column_stack([cx + radius * ca, cy + radius * sa, np.full(segments, z0)])
    top = np.column_stack([cx + r1 * ca, cy + r1 * sa, np.full(segments, z1)])
    slope = (radius - r1) / max(z1 - z0, 1e-9)
    side_n = np.column_stack([ca, sa, np.full(segments, slope)])
    side_n /= np.linalg.norm(side_n, axis=1, keepdims=True)
    pos = [bottom, top]
    nrm = [side_n, side_n]
    i = np.arange(segments)
    j = (i + 1) % segments
    idx = [np.column_stack([i, j, segments + j, i, segments + j, segments + i]).reshape(-1)]
    base = 2 * segments
    if caps:
        for ring, z_n, flip in ((top, 1.0, False), (bottom, -1.0, True)):
            centre = np.array([[cx, cy, ring[0, 2]]])
            pos.append(np.vstack([centre, ring]))
            nrm.append(np.tile([0.0, 0.0, z_n], (segments + 1, 1)))
            tri = np.column_stack([np.zeros(segments, int), 1 + i, 1 + j])
            if flip:
                tri = tri[:, [0, 2, 1]]
            idx.append((tri + base).reshape(-1))
            base += segments + 1
    return _part(np.vstack(pos), np.vstack(nrm), np.concatenate(idx), color)


def ellipsoid(center: tuple[float, float, float], radii: tuple[float, float, float], color: np.ndarray,
              rings: int = 5, segments: int = 8) -> _Part:
    """Low-poly smooth UV ellipsoid."""
    th = np.linspace(0.0, np.pi, rings + 1)
    ph = np.linspace(0.0, 2 * np.pi, segments + 1)
    t, p = np.meshgrid(th, ph, indexing="ij")
    unit = np.stack([np.sin(t) * np.cos(p), np.sin(t) * np.sin(p), np.cos(t)], axis=-1).reshape(-1, 3)
    r = np.asarray(radii, float)
    pos = unit * r + np.asarray(center, float)
    nrm = unit / r
    nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-12)
    a = (np.arange(rings)[:, None] * (segments + 1) + np.arange(segments)[None, :]).reshape(-1)
    b = a + segments + 1
    idx = np.column_stack([a, b, b + 1, a, b + 1, a + 1]).reshape(-1)
    return _part(pos, nrm, idx, color)


def merge(name: str, parts: Sequence[_Part], **meta: float) -> TemplateMesh:
    """Concatenate parts into one mesh with per-vertex colours."""
    pos, nrm, col, idx = [], [], [], []
    base = 0
    for p in parts:
        pos.append(p.positions)
        nrm.append(p.normals)
        col.append(np.tile(p.color, (len(p.positions), 1)))
        idx.append(p.indices + base)
        base += len(p.positions)
    return TemplateMesh(
        name=name,
        positions=np.vstack(pos).astype(np.float32),
        normals=np.vstack(nrm).astype(np.float32),
        colors=np.vstack(col).astype(np.float32),
        indices=np.concatenate(idx).astype(np.uint32),
        meta=dict(meta),
    )


# ---------------------------------------------------------------------------------------------
# PNG writer and procedural crown textures
# ---------------------------------------------------------------------------------------------


def encode_png(rgba: np.ndarray) -> bytes:
    """Minimal PNG encoder: (H, W, 4) uint8 RGBA → PNG bytes (filter 0, zlib level 9)."""
    img = np.ascontiguousarray(rgba, dtype=np.uint8)
    if img.ndim != 3 or img.shape[2] != 4:
        raise ValueError(f"encode_png wants (H, W, 4) uint8, got {img.shape}")
    h, w, _ = img.shape
    raw = np.concatenate([np.zeros((h, 1), np.uint8), img.reshape(h, w * 4)], axis=1).tobytes()

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
        return struct.pack(">I", len(data)) + tag + data + crc

    header = struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b""))


def crown_texture(kind: str = "broadleaf", size: int = 128, seed: int = 3) -> np.ndarray:
    """(size, size, 4) uint8 RGBA tree image: leafy crown over a trunk, transparent elsewhere.

    Row 0 is the top of the tree (glTF texture v grows downwards). The crown fills the whole
    width (its diameter maps to the instance's crown diameter); the trunk occupies the bottom.
    """
    rng = np.random.default_rng(seed)
    v, u = np.mgrid[0:size, 0:size].astype(np.float64)
    u = (u + 0.5) / size
    v = (v + 0.5) / size
    leaf = np.zeros((size, size), bool)
    shade = np.zeros((size, size))
    if kind == "conifer":
        crown_top, crown_bottom = 0.02, 0.82
        n_clumps = 140
        cv = rng.uniform(crown_top + 0.04, crown_bottom - 0.03, n_clumps)
        half_w = 0.48 * (cv - crown_top) / (crown_bottom - crown_top)
        cu = 0.5 + rng.uniform(-1, 1, n_clumps) * half_w
        cr = rng.uniform(0.03, 0.06, n_clumps)
    else:
        crown_top, crown_bottom = 0.02, 0.72
        n_clumps = 90
        ang = rng.uniform(0, 2 * np.pi, n_clumps)
        rad = np.sqrt(rng.uniform(0, 1, n_clumps))
        cu = 0.5 + 0.38 * rad * np.cos(ang)
        cv = 0.37 + 0.27 * rad * np.sin(ang)
        cr = rng.uniform(0.06, 0.11, n_clumps)
    for x0, y0, r in zip(cu, cv, cr, strict=True):
        d2 = (u - x0) ** 2 + (v - y0) ** 2
        inside = d2 < r * r
        leaf |= inside
        # light from the upper left: a clump is brighter on that side
        local = np.clip(1.0 - ((u - x0 + 0.4 * r) ** 2 + (v - y0 + 0.4 * r) ** 2) / (1.6 * r * r), 0, 1)
        shade = np.where(inside, np.maximum(shade, local), shade)
    leaf &= (v > crown_top) & (v < crown_bottom)
    trunk = (np.abs(u - 0.5) < 0.035 + 0.02 * (v - 0.6)) & (v > 0.45)
    noise = rng.uniform(-0.06, 0.06, (size, size))
    base = np.array([0.20, 0.42, 0.16]) if kind != "conifer" else np.array([0.12, 0.33, 0.17])
    g = (0.55 + 0.55 * shade + noise)[..., None] * base[None, None, :]
    bark = np.array([0.36, 0.26, 0.17])[None, None, :] * (0.85 + noise[..., None])
    rgb = np.where(leaf[..., None], g, np.where(trunk[..., None], bark, 0.0))
    alpha = np.where(leaf | trunk, 1.0, 0.0)
    out = np.dstack([np.clip(rgb, 0, 1), alpha])
    return (out * 255 + 0.5).astype(np.uint8)


def billboard_tree(kind: str = "broadleaf", planes: int = 3) -> TemplateMesh:
    """Crossed vertical quads of width 1 and height 1 (scale by crown diameter / height).

    Normals point up so every plane is lit like the canopy (no dark back faces); the material
    is double sided with an alpha mask.
    """
    pos, uv, idx = [], [], []
    for k in range(planes):
        a = np.pi * k / planes
        dx, dy = 0.5 * np.cos(a), 0.5 * np.sin(a)
        pos += [(-dx, -dy, 0.0), (dx, dy, 0.0), (dx, dy, 1.0), (-dx, -dy, 1.0)]
        uv += [(0.0, 1.0), (1.0, 1.0), (1.0, 0.0), (0.0, 0.0)]
        b = 4 * k
        idx += [b, b + 1, b + 2, b, b + 2, b + 3]
    n = len(pos)
    return TemplateMesh(
        name=f"tree_{kind}",
        positions=np.asarray(pos, np.float32),
        normals=np.tile(np.array([0, 0, 1], np.float32), (n, 1)),
        colors=np.ones((n, 4), np.float32),
        indices=np.asarray(idx, np.uint32),
        texcoords=np.asarray(uv, np.float32),
        texture_png=encode_png(crown_texture(kind)),
        alpha_cutoff=0.5,
        double_sided=True,
        meta={"unit": 1.0},
    )


CONIFER_HINTS = ("pine", "cedar", "cypress", "fir", "spruce", "juniper", "metasequoia", "sequoia",
                 "松", "柏", "杉")


def tree_kind(species: str | None) -> str:
    """'conifer' or 'broadleaf' from a species name (English or Chinese); default broadleaf."""
    s = (species or "").lower()
    return "conifer" if any(h in s for h in CONIFER_HINTS) else "broadleaf"


# ---------------------------------------------------------------------------------------------
# Street furniture (realistic dimensions, metres)
# ---------------------------------------------------------------------------------------------

GREY = hex_color("#8a8d91")
DARK = hex_color("#3b3f44")
STEEL = hex_color("#b4b8bc")
LIGHT = hex_color("#fff4c8")
GLASS = hex_color("#9fc3d6")
GREEN = hex_color("#2f7d4a")
RED = hex_color("#c0392b")
AMBER = hex_color("#e0a526")
SIGNAL_GREEN = hex_color("#27ae60")
WOOD = hex_color("#9a6b3f")
STONE = hex_color("#c9c2b3")
BLUE = hex_color("#2e5e9e")
WHITE = hex_color("#eeeeee")
BRONZE = hex_color("#8c6a3c")


def street_lamp() -> TemplateMesh:
    h = 10.0
    return merge("street_lamp", [
        cylinder((0, 0), 0.0, 0.4, 0.2, DARK, 8),
        cylinder((0, 0), 0.4, h, 0.09, GREY, 8, radius_top=0.06),
        box((0, 0.9), h - 0.25, (0.08, 1.8, 0.08), GREY),
        box((0, 1.75), h - 0.45, (0.35, 0.7, 0.2), DARK),
        box((0, 1.75), h - 0.47, (0.28, 0.6, 0.02), LIGHT),
    ], nominal_height=h)


def traffic_signal() -> TemplateMesh:
    """Pole at the kerb, a mast arm over the carriageway (+x), heads facing +y."""
    h = 6.5
    parts = [
        cylinder((0, 0), 0.0, h, 0.13, DARK, 10, radius_top=0.1),
        box((2.6, 0), h - 0.7, (5.2, 0.12, 0.12), DARK),
        box((0, 0.15), 2.6, (0.3, 0.25, 0.9), DARK),  # pedestrian head on the pole
    ]
    for x in (2.2, 4.6):
        parts.append(box((x, 0), h - 1.85, (0.38, 0.3, 1.1), DARK))
        for z, c in ((h - 1.05, RED), (h - 1.3, AMBER), (h - 1.55, SIGNAL_GREEN)):
            parts.append(cylinder((x, 0.15), z - 0.1, z + 0.1, 0.1, c, 8))  # lens discs sit proud
    return merge("traffic_signal", parts, nominal_height=h)


def sign() -> TemplateMesh:
    h = 3.0
    return merge("sign", [
        cylinder((0, 0), 0.0, h - 0.2, 0.05, GREY, 8),
        box((0, 0.06), h - 1.0, (0.9, 0.04, 1.0), BLUE),
        box((0, 0.085), h - 0.9, (0.75, 0.01, 0.8), WHITE),
    ], nominal_height=h)


def bus_shelter() -> TemplateMesh:
    """3.6 m x 1.6 m shelter: back panel at -y, open to the road at +y."""
    w, d, h = 3.6, 1.6, 2.6
    parts = [
        box((0, 0), h - 0.12, (w + 0.3, d + 0.3, 0.12), GREY),
        box((0, -d / 2 + 0.05), 0.15, (w, 0.04, h - 0.4), GLASS),
        box((-w / 2 + 0.02, 0), 0.15, (0.04, d - 0.2, h - 0.4), GLASS),
        box((0, -0.2), 0.42, (w - 0.6, 0.35, 0.06), STEEL),
        box((w / 2 - 0.05, -d / 2 + 0.05), 0.0, (0.1, 0.03, h - 0.1), BLUE),  # route panel frame
    ]
    for sx in (-1, 1):
        for sy in (-1, 1):
            parts.append(box((sx * (w / 2 - 0.05), sy * (d / 2 - 0.05)), 0.0, (0.08, 0.08, h - 0.12), STEEL))
    return merge("bus_shelter", parts, nominal_height=h)


def bench() -> TemplateMesh:
    """1.8 m bench, sitter faces +y."""
    return merge("bench", [
        box((-0.75, 0), 0.0, (0.08, 0.45, 0.43), DARK),
        box((0.75, 0), 0.0, (0.08, 0.45, 0.43), DARK),
        box((0, 0), 0.43, (1.8, 0.45, 0.05), WOOD),
        box((0, -0.22), 0.5, (1.8, 0.05, 0.35), WOOD),
    ], nominal_height=0.85)


def waste_bin() -> TemplateMesh:
    return merge("waste_bin", [
        box((-0.22, 0), 0.0, (0.4, 0.4, 0.9), GREEN),
        box((0.22, 0), 0.0, (0.4, 0.4, 0.9), hex_color("#5a6e8c")),
        box((0, 0), 0.9, (0.9, 0.46, 0.1), DARK),
    ], nominal_height=1.0)


def toilet() -> TemplateMesh:
    """Small public toilet block 6 x 4 m, door side +y."""
    return merge("toilet", [
        box((0, 0), 0.0, (6.0, 4.0, 3.0), hex_color("#d9d2c2")),
        box((0, 0), 3.0, (6.4, 4.4, 0.35), hex_color("#6d4c41")),
        box((-1.5, 2.0), 0.0, (1.0, 0.06, 2.1), WOOD),
        box((1.5, 2.0), 0.0, (1.0, 0.06, 2.1), WOOD),
    ], nominal_height=3.35)


def kiosk() -> TemplateMesh:
    return merge("kiosk", [
        box((0, 0), 0.0, (2.5, 2.0, 2.6), hex_color("#c56a2d")),
        box((0, 1.0), 1.0, (2.0, 0.05, 1.1), GLASS),
        box((0, 0.25), 2.6, (2.9, 2.6, 0.15), hex_color("#7f3f17")),
    ], nominal_height=2.75)


def billboard() -> TemplateMesh:
    """Large roadside billboard: a 6 x 3 m panel on a single column, face +y."""
    h = 9.0
    return merge("billboard", [
        cylinder((0, 0), 0.0, h - 3.0, 0.3, GREY, 10),
        box((0, 0), h - 3.2, (6.2, 0.5, 3.2), DARK),
        box((0, 0.26), h - 3.05, (5.9, 0.02, 2.9), hex_color("#e8e2d0")),
        box((0, -0.26), h - 3.05, (5.9, 0.02, 2.9), hex_color("#e8e2d0")),
    ], nominal_height=h)


def fire_hydrant() -> TemplateMesh:
    return merge("fire_hydrant", [
        cylinder((0, 0), 0.0, 0.1, 0.17, RED, 10),
        cylinder((0, 0), 0.1, 0.7, 0.12, RED, 10),
        cylinder((0, 0), 0.7, 0.85, 0.13, RED, 10, radius_top=0.05),
        box((0, 0), 0.45, (0.4, 0.1, 0.1), RED),
        box((0, 0.1), 0.43, (0.12, 0.12, 0.14), RED),
    ], nominal_height=0.85)


def fitness() -> TemplateMesh:
    """Outdoor fitness station: two posts with a cross bar and a pair of pedals."""
    yellow, blue = hex_color("#f2c12e"), hex_color("#2e86c1")
    return merge("fitness", [
        cylinder((-0.9, 0), 0.0, 2.2, 0.06, blue, 8),
        cylinder((0.9, 0), 0.0, 2.2, 0.06, blue, 8),
        box((0, 0), 2.1, (1.9, 0.1, 0.1), yellow),
        box((-0.3, 0), 0.3, (0.05, 0.05, 1.8), yellow),
        box((0.3, 0), 0.3, (0.05, 0.05, 1.8), yellow),
        box((-0.3, 0.12), 0.3, (0.25, 0.3, 0.04), DARK),
        box((0.3, 0.12), 0.3, (0.25, 0.3, 0.04), DARK),
    ], nominal_height=2.2)


def sculpture() -> TemplateMesh:
    """Abstract landmark: a stone plinth with three twisting bronze blades and a ring."""
    parts = [
        box((0, 0), 0.0, (3.0, 3.0, 0.6), STONE),
        box((0, 0), 0.6, (2.2, 2.2, 0.4), STONE),
    ]
    for k in range(6):
        parts.append(box((0, 0), 1.0 + 1.0 * k, (0.5, 1.6 - 0.18 * k, 1.0), BRONZE, yaw_deg=15.0 * k))
    parts.append(ellipsoid((0, 0, 7.5), (0.7, 0.7, 0.7), BRONZE, rings=6, segments=10))
    return merge("sculpture", parts, nominal_height=8.2)


def tree_solid() -> TemplateMesh:
    """Low-poly solid tree of unit height (trunk + ellipsoid crown), for close-up LODs."""
    return merge("tree_solid", [
        cylinder((0, 0), 0.0, 0.45, 0.035, hex_color("#5b4030"), 6, radius_top=0.025),
        ellipsoid((0, 0, 0.66), (0.5, 0.5, 0.33), hex_color("#3f7f35"), rings=4, segments=7),
    ], nominal_height=1.0)


FURNITURE_BUILDERS: dict[str, Callable[[], TemplateMesh]] = {
    "street_lamp": street_lamp,
    "traffic_signal": traffic_signal,
    "sign": sign,
    "bus_shelter": bus_shelter,
    "bench": bench,
    "waste_bin": waste_bin,
    "toilet": toilet,
    "kiosk": kiosk,
    "billboard": billboard,
    "fire_hydrant": fire_hydrant,
    "fitness": fitness,
    "sculpture": sculpture,
}
FURNITURE_TYPES: tuple[str, ...] = tuple(FURNITURE_BUILDERS)


@cache
def furniture_template(kind: str) -> TemplateMesh:
    """The template for a furniture ``type`` (KeyError for an unknown type)."""
    return FURNITURE_BUILDERS[kind]()


@cache
def tree_template(kind: str = "broadleaf") -> TemplateMesh:
    return billboard_tree(kind)
