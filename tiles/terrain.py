"""Cesium quantized-mesh-1.0 terrain: tiling scheme, meshing, encoding, decoding (pure functions).

Tiling: the geographic (EPSG:4326) scheme Cesium uses by default — level ``z`` has
``2^(z+1) x 2^z`` tiles of ``180 / 2^z`` degrees, ``y`` counted from the south (TMS).

Meshing: :func:`mesh_heightmap` runs pydelatin (Delaunay refinement to a vertical ``max_error``
in metres) on a ``n x n`` grid of ELLIPSOIDAL heights (row 0 = north), then makes sure every grid
point of the four tile borders is a vertex (:func:`complete_borders`). Neighbouring tiles sample
the same DEM at the same border lon/lat, so both sides of a shared edge carry identical vertices:
no cracks and no T-junctions between tiles of one level; skirts (built by Cesium from the edge
index lists) hide cracks between levels. A curvature term (the sag of a chord over the ellipsoid)
is added to the heights seen by delatin so large, flat low-level tiles are still tessellated
finely enough not to cut through the globe.

Encoding: :func:`encode_tile` uses quantized-mesh-encoder's header, vertex, index, edge and
extension writers (``octvertexnormals`` and ``watermask``), but quantises u/v/h itself in float64
with rounding (the package's own ``encode()`` casts lon/lat to float32, ≈0.7 m at 117°E, and
truncates), so tile borders land exactly on u/v = 0 / 32767.

Decoding: :func:`decode_tile` is a minimal reader (header, vertices, indices, edges, extensions)
used by the validator and the tests.
"""

from __future__ import annotations

import gzip
import io
import math
import struct
from dataclasses import dataclass, field

import numpy as np
from pydelatin import Delatin
from quantized_mesh_encoder.encode import (
    compute_header,
    encode_header,
    write_edge_indices,
    write_indices,
    write_vertices,
)
from quantized_mesh_encoder.extensions import VertexNormalsExtension, WaterMaskExtension

QMAX = 32767
HEADER_BYTES = 88
EXT_OCT_NORMALS = 1
EXT_WATERMASK = 2
EXT_METADATA = 4
WATERMASK_SIZE = 256
WGS84_A = 6378137.0
# Cesium: TerrainProvider.getEstimatedLevelZeroGeometricErrorForAHeightmap(WGS84, 65, 2)
LEVEL0_GEOMETRIC_ERROR = WGS84_A * 2 * math.pi * 0.25 / (65 * 2)

Bounds = tuple[float, float, float, float]  # west, south, east, north (degrees)


# ------------------------------------------------------------------------------ tiling scheme
def tile_size_deg(z: int) -> float:
    return 180.0 / (1 << z)


def tile_bounds(z: int, x: int, y: int) -> Bounds:
    """(west, south, east, north) degrees of TMS tile z/x/y in the geographic scheme."""
    s = tile_size_deg(z)
    return (-180.0 + x * s, -90.0 + y * s, -180.0 + (x + 1) * s, -90.0 + (y + 1) * s)


def tile_range(bounds: Bounds, z: int) -> tuple[int, int, int, int]:
    """Inclusive (x0, y0, x1, y1) of the level-z tiles intersecting lon/lat ``bounds``."""
    s = tile_size_deg(z)
    w, so, e, n = bounds
    nx, ny = 2 << z, 1 << z
    x0 = min(max(int(math.floor((w + 180.0) / s)), 0), nx - 1)
    x1 = min(max(int(math.ceil((e + 180.0) / s)) - 1, x0), nx - 1)
    y0 = min(max(int(math.floor((so + 90.0) / s)), 0), ny - 1)
    y1 = min(max(int(math.ceil((n + 90.0) / s)) - 1, y0), ny - 1)
    return x0, y0, x1, y1


def level_geometric_error(z: int) -> float:
    """Cesium's own screen-space-error budget (metres) for terrain tiles of level ``z``."""
    return LEVEL0_GEOMETRIC_ERROR / (1 << z)


def auto_max_level(resolution_m: float, grid_size: int = 257) -> int:
    """Finest level whose grid spacing (east-west at the equator) is closest to ``resolution_m``."""
    half_circumference = math.pi * WGS84_A
    level = math.log2(half_circumference / ((grid_size - 1) * resolution_m))
    return max(0, int(round(level)))


def level_max_error(z: int, max_level: int, finest_error: float) -> float:
    """Vertical meshing tolerance: ``finest_error`` at the leaves, never below an eighth of
    Cesium's level error above them (coarse tiles carry no detail Cesium would not show)."""
    return max(finest_error, level_geometric_error(z) / 8.0) if z < max_level else finest_error


def tile_lonlat_grid(bounds: Bounds, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, n) lon and lat of the tile grid, row 0 = north edge, column 0 = west edge.

    Border coordinates are the exact tile bounds, so neighbours sample identical points."""
    w, s, e, nth = bounds
    f = np.arange(n, dtype=np.float64) / (n - 1)
    lon = w + f * (e - w)
    lat = nth - f * (nth - s)
    lon[0], lon[-1], lat[0], lat[-1] = w, e, nth, s
    return np.broadcast_to(lon, (n, n)).copy(), np.broadcast_to(lat[:, None], (n, n)).copy()


# ------------------------------------------------------------------------------------ meshing
def _curvature_term(bounds: Bounds, n: int) -> np.ndarray:
    """Sag (m) of the ellipsoid below a plane through the tile centre, on the tile grid."""
    w, s, e, nth = bounds
    lat_c = math.radians((s + nth) / 2)
    f = np.arange(n, dtype=np.float64) / (n - 1) - 0.5
    dx = f * math.radians(e - w) * math.cos(lat_c) * WGS84_A
    dy = f * math.radians(nth - s) * WGS84_A
    return -(dx[None, :] ** 2 + dy[:, None] ** 2) / (2 * WGS84_A)


def complete_borders(vertices_px: np.ndarray, triangles: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Add every border grid point of an ``n x n`` grid as a vertex.

    ``vertices_px`` (V, 2) integer (col, row); ``triangles`` (T, 3). Each triangle with an edge
    lying on a border is split into a fan from its opposite vertex through the missing border
    points. Returns the new (V', 2) vertices and (T', 3) triangles (orientation preserved)."""
    verts = [tuple(int(c) for c in v) for v in vertices_px]
    index = {v: i for i, v in enumerate(verts)}
    last = n - 1

    def vid(col: int, row: int) -> int:
        key = (col, row)
        if key not in index:
            index[key] = len(verts)
            verts.append(key)
        return index[key]

    def border_points(a: tuple[int, int], b: tuple[int, int]) -> list[tuple[int, int]] | None:
        """Grid points strictly between a and b if ab lies on one border, else None."""
        (ca, ra), (cb, rb) = a, b
        if ca == cb and ca in (0, last):
            step = 1 if rb > ra else -1
            return [(ca, r) for r in range(ra + step, rb, step)]
        if ra == rb and ra in (0, last):
            step = 1 if cb > ca else -1
            return [(c, ra) for c in range(ca + step, cb, step)]
        return None

    on_border = np.any((vertices_px == 0) | (vertices_px == last), axis=1)
    tri = np.asarray(triangles, dtype=np.int64)
    candidate = on_border[tri].sum(axis=1) >= 2
    out: list[tuple[int, int, int]] = [tuple(t) for t in tri[~candidate].tolist()]
    stack: list[tuple[int, int, int]] = [tuple(t) for t in tri[candidate].tolist()]
    while stack:
        t = stack.pop()
        for k in range(3):
            a, b, c = t[k], t[(k + 1) % 3], t[(k + 2) % 3]
            between = border_points(verts[a], verts[b])
            if between:
                chain = [a, *(vid(*p) for p in between), b]
                fan = [(chain[i], chain[i + 1], c) for i in range(len(chain) - 1)]
                # only the end triangles (holding a or b, maybe corners) can touch another border
                stack.append(fan[0])
                if len(fan) > 1:
                    stack.append(fan[-1])
                out.extend(fan[1:-1])
                break
        else:
            out.append(t)
    return np.asarray(verts, dtype=np.int64), np.asarray(out, dtype=np.int64).reshape(-1, 3)


def mesh_heightmap(heights: np.ndarray, bounds: Bounds, max_error: float) -> tuple[np.ndarray, np.ndarray]:
    """TIN of an (n, n) ellipsoidal height grid (row 0 = north) covering ``bounds``.

    Returns positions (V, 3) lon°, lat°, h (float64) and counter-clockwise triangles (T, 3)."""
    heights = np.asarray(heights, dtype=np.float64)
    n = heights.shape[0]
    if heights.shape != (n, n) or n < 2:
        raise ValueError(f"heights must be a square grid, got {heights.shape}")
    if not np.all(np.isfinite(heights)):
        raise ValueError("heights contain NaN/inf: fill nodata before meshing")
    seen = heights + _curvature_term(bounds, n)
    tin = Delatin(np.ascontiguousarray(seen, dtype=np.float32), max_error=float(max_error))
    px = np.rint(np.asarray(tin.vertices)[:, :2]).astype(np.int64)
    px[:, 1] = (n - 1) - px[:, 1]  # pydelatin's y grows upwards from the last row
    vertices_px, triangles = complete_borders(px, np.asarray(tin.triangles, dtype=np.int64), n)
    col, row = vertices_px[:, 0], vertices_px[:, 1]
    lon, lat = tile_lonlat_grid(bounds, n)
    positions = np.column_stack([lon[row, col], lat[row, col], heights[row, col]])
    # counter-clockwise seen from above (east = +u, north = +v)
    p = positions[:, :2]
    a, b, c = p[triangles[:, 0]], p[triangles[:, 1]], p[triangles[:, 2]]
    cross = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    flip = cross < 0
    triangles[flip] = triangles[flip][:, [0, 2, 1]]
    return positions, triangles[cross != 0]


# ----------------------------------------------------------------------------------- encoding
def reorder_for_high_water_mark(positions: np.ndarray,
                                triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Renumber vertices in order of first use by the index stream (what high-water-mark
    encoding requires); unreferenced vertices are dropped."""
    flat = np.asarray(triangles, dtype=np.int64).reshape(-1)
    _, first = np.unique(flat, return_index=True)
    order = flat[np.sort(first)]  # old vertex ids in order of first appearance
    new_id = np.full(len(positions), -1, dtype=np.int64)
    new_id[order] = np.arange(len(order))
    return positions[order], new_id[flat].reshape(-1, 3)


def quantize(positions: np.ndarray, bounds: Bounds) -> np.ndarray:
    """(V, 3) int16 u, v, h in 0..32767 (rounded, float64; heights over the tile's own range)."""
    w, s, e, n = bounds
    h = positions[:, 2]
    hmin, hmax = float(h.min()), float(h.max())
    span = hmax - hmin
    u = np.rint((positions[:, 0] - w) / (e - w) * QMAX)
    v = np.rint((positions[:, 1] - s) / (n - s) * QMAX)
    q = np.rint((h - hmin) / span * QMAX) if span > 0 else np.zeros_like(h)
    return np.clip(np.column_stack([u, v, q]), 0, QMAX).astype(np.int16)


def watermask_payload(mask: np.ndarray | int | None) -> np.ndarray | int:
    """1 byte for a uniform tile, else the 256x256 mask (0 land … 255 water, row 0 = north)."""
    if mask is None:
        return 0
    if isinstance(mask, (int, np.integer)):
        return int(mask)
    m = np.asarray(mask, dtype=np.uint8)
    if m.shape != (WATERMASK_SIZE, WATERMASK_SIZE):
        raise ValueError(f"watermask must be 256x256, got {m.shape}")
    if np.all(m == m.flat[0]):
        return int(m.flat[0])
    return m


def encode_tile(
    positions: np.ndarray,
    triangles: np.ndarray,
    bounds: Bounds,
    watermask: np.ndarray | int | None = None,
    *,
    compress: bool = True,
) -> bytes:
    """Encode one quantized-mesh-1.0 tile with ``octvertexnormals`` and ``watermask`` extensions.

    ``positions`` (V, 3) lon°, lat°, ellipsoidal h; triangles (T, 3) counter-clockwise.
    Returns gzip-compressed bytes when ``compress`` (serve with ``Content-Encoding: gzip``)."""
    positions, triangles = reorder_for_high_water_mark(
        np.asarray(positions, dtype=np.float64).reshape(-1, 3), triangles)
    triangles = triangles.astype(np.uint32)
    buf = io.BytesIO()
    encode_header(buf, compute_header(positions, "naive"))
    quantized = quantize(positions, bounds)
    write_vertices(buf, quantized, len(quantized))
    write_indices(buf, triangles, len(quantized))
    write_edge_indices(buf, quantized, len(quantized))
    buf.write(VertexNormalsExtension(indices=triangles, positions=positions).encode())
    buf.write(WaterMaskExtension(data=watermask_payload(watermask)).encode())
    raw = buf.getvalue()
    return gzip.compress(raw, compresslevel=6, mtime=0) if compress else raw


# ----------------------------------------------------------------------------------- decoding
@dataclass
class QuantizedMeshTile:
    """A decoded tile: header values, quantised vertices, triangles, edge lists, extensions."""

    center: tuple[float, float, float]
    min_height: float
    max_height: float
    sphere_center: tuple[float, float, float]
    sphere_radius: float
    horizon_occlusion: tuple[float, float, float]
    u: np.ndarray
    v: np.ndarray
    h: np.ndarray
    triangles: np.ndarray
    west: np.ndarray
    south: np.ndarray
    east: np.ndarray
    north: np.ndarray
    extensions: dict[int, bytes] = field(default_factory=dict)
    gzipped: bool = False

    @property
    def heights(self) -> np.ndarray:
        """Ellipsoidal heights (metres) of the vertices."""
        return self.min_height + self.h.astype(np.float64) / QMAX * (self.max_height - self.min_height)

    def lonlat(self, bounds: Bounds) -> tuple[np.ndarray, np.ndarray]:
        w, s, e, n = bounds
        return w + self.u / QMAX * (e - w), s + self.v / QMAX * (n - s)

    def watermask(self) -> np.ndarray | int | None:
        data = self.extensions.get(EXT_WATERMASK)
        if data is None:
            return None
        if len(data) == 1:
            return data[0]
        return np.frombuffer(data, dtype=np.uint8).reshape(WATERMASK_SIZE, WATERMASK_SIZE)


def _zigzag_deltas(raw: np.ndarray) -> np.ndarray:
    v = raw.astype(np.int64)
    return np.cumsum((v >> 1) ^ -(v & 1)).astype(np.int64)


def _high_water_mark(codes: np.ndarray) -> np.ndarray:
    codes = codes.astype(np.int64)
    zeros = codes == 0
    highest = np.cumsum(zeros) - zeros
    return highest - codes


def decode_tile(data: bytes) -> QuantizedMeshTile:
    """Decode a quantized-mesh-1.0 tile (plain or gzip). Raises ValueError on malformed data."""
    gzipped = data[:2] == b"\x1f\x8b"
    if gzipped:
        data = gzip.decompress(data)
    if len(data) < HEADER_BYTES + 4:
        raise ValueError(f"tile too short ({len(data)} bytes)")
    hdr = struct.unpack_from("<3d2f4d3d", data, 0)
    pos = HEADER_BYTES
    (count,) = struct.unpack_from("<I", data, pos)
    pos += 4
    if pos + 6 * count > len(data):
        raise ValueError(f"vertex data ({count} vertices) runs past the end of the tile")
    arrays = []
    for _ in range(3):
        arrays.append(_zigzag_deltas(np.frombuffer(data, dtype="<u2", count=count, offset=pos)))
        pos += 2 * count
    u, v, h = arrays
    wide = count > 65536
    isize = 4 if wide else 2
    pos += (-pos) % isize
    (ntri,) = struct.unpack_from("<I", data, pos)
    pos += 4
    idt = "<u4" if wide else "<u2"
    if pos + 3 * ntri * isize > len(data):
        raise ValueError(f"index data ({ntri} triangles) runs past the end of the tile")
    triangles = _high_water_mark(np.frombuffer(data, dtype=idt, count=3 * ntri, offset=pos)).reshape(-1, 3)
    pos += 3 * ntri * isize
    edges = []
    for _ in range(4):
        (m,) = struct.unpack_from("<I", data, pos)
        pos += 4
        edges.append(np.frombuffer(data, dtype=idt, count=m, offset=pos).astype(np.int64))
        pos += m * isize
    extensions: dict[int, bytes] = {}
    while pos < len(data):
        if pos + 5 > len(data):
            raise ValueError("truncated extension header")
        ext_id, length = struct.unpack_from("<BI", data, pos)
        pos += 5
        if pos + length > len(data):
            raise ValueError(f"extension {ext_id} runs past the end of the tile")
        extensions[ext_id] = data[pos:pos + length]
        pos += length
    return QuantizedMeshTile(
        center=hdr[0:3], min_height=hdr[3], max_height=hdr[4], sphere_center=hdr[5:8],
        sphere_radius=hdr[8], horizon_occlusion=hdr[9:12], u=u, v=v, h=h, triangles=triangles,
        west=edges[0], south=edges[1], east=edges[2], north=edges[3], extensions=extensions,
        gzipped=gzipped,
    )


def interpolate_height(tile: QuantizedMeshTile, bounds: Bounds, lon: np.ndarray,
                       lat: np.ndarray) -> np.ndarray:
    """Heights of the rendered tile surface at lon/lat (barycentric in the containing triangle).

    NaN for points outside the tile. Vectorised over points; loops over triangles in chunks."""
    lon = np.atleast_1d(np.asarray(lon, dtype=np.float64))
    lat = np.atleast_1d(np.asarray(lat, dtype=np.float64))
    w, s, e, n = bounds
    pu = (lon - w) / (e - w) * QMAX
    pv = (lat - s) / (n - s) * QMAX
    hv = tile.heights
    out = np.full(lon.shape, np.nan)
    t = tile.triangles
    ax, ay = tile.u[t[:, 0]].astype(float), tile.v[t[:, 0]].astype(float)
    bx, by = tile.u[t[:, 1]].astype(float), tile.v[t[:, 1]].astype(float)
    cx, cy = tile.u[t[:, 2]].astype(float), tile.v[t[:, 2]].astype(float)
    det = (by - cy) * (ax - cx) + (cx - bx) * (ay - cy)
    ok = det != 0
    for i in range(len(lon)):
        l1 = ((by - cy) * (pu[i] - cx) + (cx - bx) * (pv[i] - cy)) / np.where(ok, det, 1)
        l2 = ((cy - ay) * (pu[i] - cx) + (ax - cx) * (pv[i] - cy)) / np.where(ok, det, 1)
        l3 = 1 - l1 - l2
        eps = -1e-9
        inside = ok & (l1 >= eps) & (l2 >= eps) & (l3 >= eps)
        hit = np.flatnonzero(inside)
        if len(hit):
            j = hit[0]
            out[i] = l1[j] * hv[t[j, 0]] + l2[j] * hv[t[j, 1]] + l3[j] * hv[t[j, 2]]
    return out
