"""`onemap tiles imagery ORTHO.tif --out DIR`: an orthophoto (any CRS GDAL reads, ideally a COG)
-> an offline imagery pyramid Cesium reads (tiles/imagery.py describes the layout).

Each level is read in blocks of ``block`` x ``block`` tiles on the tile grid of a morecantile
TMS (WorldCRS84Quad by default, = Cesium's GeographicTilingScheme; or WebMercatorQuad): one
windowed read per block (the COG's overviews do the decimation), then one affine resample per
block (PIL's C resampler) when the block's reprojection is affine to < 0.25 source pixel (always
at district scale), else GDAL's warper. About 10x faster here than per-tile rio-tiler reads.
Levels run from the finest where the data fits in <= 4 tiles to the one nearest the source's
resolution. Published atomically (Staging) after validation; an unchanged source + options
reuses the previous pyramid.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import morecantile
import numpy as np
import rasterio
from affine import Affine
from PIL import Image
from pyproj import CRS, Transformer
from rasterio.enums import Resampling
from rasterio.errors import WindowError
from rasterio.transform import from_bounds
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window

from core.errors import InputError
from pipelines.progress import Progress, report
from pipelines.publish import Staging, digest, read_manifest, write_manifest
from tiles.imagery import PROFILES, TILE_PX, PyramidInfo, encode_tile, tms_y, validate_imagery, write_metadata

log = logging.getLogger(__name__)
PIPELINE_VERSION = "imagery-1"


@dataclass
class ImageryOptions:
    """Options of :func:`build_imagery`."""

    scheme: str = "WorldCRS84Quad"  # or "WebMercatorQuad"
    fmt: str = "webp"  # or "png"
    quality: int = 82  # WebP quality
    minzoom: int | None = None  # default: first level where the data fits in <= 4 tiles
    maxzoom: int | None = None  # default: the level matching the source's resolution
    block: int = 8  # tiles per side read at once
    resampling: str = "bilinear"


@dataclass
class ImageryResult:
    out: Path
    info: PyramidInfo
    seconds: float = 0.0
    reused: bool = False
    levels: dict[int, int] = field(default_factory=dict)

    def summary(self) -> str:
        i = self.info
        return (f"imagery: {i.tiles} tiles, levels {i.minzoom}-{i.maxzoom} ({i.scheme}, {i.fmt}), "
                f"{i.bytes / 1e6:.1f} MB in {self.seconds:.1f} s -> {self.out}")


def _tile_range(tms: morecantile.TileMatrixSet, bounds_lonlat, z: int) -> tuple[int, int, int, int]:
    w, s, e, n = bounds_lonlat
    tl = tms.tile(w, n, z)
    br = tms.tile(e - 1e-12, s + 1e-12, z)
    return tl.x, tl.y, br.x, br.y


def _native_zoom(tms, ds) -> int:
    """The first level whose pixels are at least as fine as the source's (in the TMS's CRS)."""
    b = transform_bounds(ds.crs, tms.rasterio_crs, *ds.bounds, densify_pts=21)
    res = ((b[2] - b[0]) / ds.width * (b[3] - b[1]) / ds.height) ** 0.5
    return int(tms.zoom_for_res(res, zoom_level_strategy="auto"))


def _default_minzoom(tms, bounds_lonlat, maxzoom: int) -> int:
    """The finest level at which the whole image fits in <= 4 tiles."""
    z = maxzoom
    while z > 0:
        x0, y0, x1, y1 = _tile_range(tms, bounds_lonlat, z)
        if (x1 - x0 + 1) * (y1 - y0 + 1) <= 4:
            break
        z -= 1
    return z


def build_imagery(src: Path | str, out: Path | str, options: ImageryOptions | None = None,
                  progress: Progress | None = None) -> ImageryResult:
    options = options or ImageryOptions()
    src, out = Path(src), Path(out)
    t0 = time.perf_counter()
    if options.scheme not in PROFILES:
        raise InputError(f"--scheme {options.scheme!r}: use one of {', '.join(PROFILES)}")
    if options.fmt not in ("png", "webp"):
        raise InputError(f"--format {options.fmt!r}: use png or webp")
    if not src.exists():
        raise InputError(f"{src}: orthophoto not found")
    tms = morecantile.tms.get(options.scheme)
    try:
        ds_ctx = rasterio.open(src)
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(f"{src}: cannot read as a raster ({exc})") from exc
    with ds_ctx as ds:
        if ds.crs is None:
            raise InputError(f"{src}: the raster has no CRS")
        if ds.count < 3:
            raise InputError(f"{src}: {ds.count} band(s); an RGB orthophoto needs 3")
        bounds = tuple(float(v) for v in transform_bounds(ds.crs, "OGC:CRS84", *ds.bounds, densify_pts=21))
        maxzoom = options.maxzoom if options.maxzoom is not None else _native_zoom(tms, ds)
        minzoom = options.minzoom if options.minzoom is not None else _default_minzoom(tms, bounds, maxzoom)
        minzoom = min(minzoom, maxzoom)
        info = PyramidInfo(options.scheme, options.fmt, minzoom, maxzoom, bounds)
        st = src.stat()
        settings = digest([PIPELINE_VERSION, repr(options), str(minzoom), str(maxzoom), str(st.st_size),
                           str(st.st_mtime_ns), src.name])
        old = read_manifest(out)
        if old.get("settings") == settings and (out / "imagery.json").exists() and not validate_imagery(out):
            info.tiles, info.bytes = int(old.get("tiles", 0)), int(old.get("bytes", 0))
            return ImageryResult(out, info, time.perf_counter() - t0, reused=True)
        staging = Staging(out)
        try:
            levels = _write_levels(ds, tms, info, options, staging, progress)
            write_metadata(staging.tmp, info, tms, src.name)
            write_manifest(staging.tmp, {"settings": settings, "tiles": info.tiles, "bytes": info.bytes})
            problems = validate_imagery(staging.tmp)
            if problems:
                raise InputError("imagery pyramid failed validation: " + "; ".join(problems[:5]))
            staging.publish()
        except BaseException:
            staging.abort()
            raise
    res = ImageryResult(out, info, time.perf_counter() - t0, levels=levels)
    log.info(res.summary())
    return res


def _read_block(ds, tms, bbox, width: int, height: int, resampling: str) -> tuple[np.ndarray, np.ndarray] | None:
    """RGB + mask of one block of tiles: the source window under ``bbox`` read at about the target
    resolution (the COG's overviews do the decimation), warped with the approximate transformer."""
    dst_tr = from_bounds(*bbox, width, height)
    src_bounds = _bounds_in(str(tms.rasterio_crs), str(ds.crs), bbox)
    win = ds.window(*src_bounds).round_offsets(op="floor").round_lengths(op="ceil")
    full = Window(0, 0, ds.width, ds.height)
    try:
        win = win.intersection(full)
    except WindowError:
        return None
    # decimation so the window is read at <= 1.5x the target resolution
    src_res = abs(ds.transform.a)
    dst_res = (src_bounds[2] - src_bounds[0]) / width
    factor = max(1.0, dst_res / src_res / 1.5)
    out_h = max(1, int(round(win.height / factor)))
    out_w = max(1, int(round(win.width / factor)))
    src = ds.read((1, 2, 3), window=win, out_shape=(3, out_h, out_w),
                  resampling=Resampling.average if factor > 1 else Resampling.nearest)
    src_tr = ds.window_transform(win) @ Affine.scale(win.width / out_w, win.height / out_h)
    fit = _affine_fit(ds.crs, tms.rasterio_crs, src_tr, dst_tr, width, height)
    if fit is not None:  # a block is affine to far below a pixel: PIL's C affine resampler
        img = Image.fromarray(np.ascontiguousarray(np.moveaxis(src, 0, -1)), "RGB").convert("RGBA")
        pil_rs = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR}.get(
            resampling, Image.Resampling.BILINEAR)
        out = np.asarray(img.transform((width, height), Image.Transform.AFFINE, fit, resample=pil_rs,
                                       fillcolor=(0, 0, 0, 0)))
        out = np.moveaxis(out, -1, 0)
        mask = out[3]
        return out[:3], np.where(mask == 255, 255, 0).astype(np.uint8)
    rgba = np.concatenate([src, np.full((1, out_h, out_w), 255, np.uint8)])
    dst = np.zeros((4, height, width), np.uint8)
    reproject(rgba, dst, src_transform=src_tr, src_crs=ds.crs, dst_transform=dst_tr, dst_crs=tms.rasterio_crs,
              resampling=Resampling[resampling], src_nodata=None, dst_nodata=None, init_dest_nodata=False)
    return dst[:3], dst[3]


def _affine_fit(src_crs, dst_crs, src_tr, dst_tr, width: int, height: int, tol_px: float = 0.25):
    """Coefficients (a, b, c, d, e, f): dst pixel (x, y) -> src pixel (a x + b y + c, d x + e y + f),
    least-squares over a 9 x 9 grid of the block; None when the residual exceeds ``tol_px``."""
    gx, gy = np.meshgrid(np.linspace(0, width, 9), np.linspace(0, height, 9))
    px, py = gx.ravel(), gy.ravel()
    wx, wy = dst_tr @ (px, py)
    sx, sy = _transformer(str(dst_crs), str(src_crs)).transform(wx, wy)
    inv = ~src_tr
    cx, cy = inv @ (np.asarray(sx), np.asarray(sy))
    A = np.column_stack([px, py, np.ones_like(px)])
    coef_x, *_ = np.linalg.lstsq(A, cx, rcond=None)
    coef_y, *_ = np.linalg.lstsq(A, cy, rcond=None)
    resid = max(np.abs(A @ coef_x - cx).max(), np.abs(A @ coef_y - cy).max())
    if not np.isfinite(resid) or resid > tol_px:
        return None
    return (*coef_x.tolist(), *coef_y.tolist())


def _bounds_in(src: str, dst: str, bbox) -> tuple[float, float, float, float]:
    """``bbox`` (in ``src``) -> bounds in ``dst`` of its densified outline."""
    t = np.linspace(0, 1, 21)
    w, s, e, n = bbox
    xs = np.concatenate([w + (e - w) * t, np.full(21, e), e - (e - w) * t, np.full(21, w)])
    ys = np.concatenate([np.full(21, s), s + (n - s) * t, np.full(21, n), n - (n - s) * t])
    x, y = _transformer(src, dst).transform(xs, ys)
    return float(np.min(x)), float(np.min(y)), float(np.max(x)), float(np.max(y))


@lru_cache(maxsize=8)
def _transformer(src: str, dst: str) -> Transformer:
    return Transformer.from_crs(CRS.from_user_input(src), CRS.from_user_input(dst), always_xy=True)


def _write_levels(ds, tms, info: PyramidInfo, options: ImageryOptions, staging: Staging,
                  progress: Progress | None) -> dict[int, int]:
    empty = encode_tile(np.zeros((3, TILE_PX, TILE_PX), np.uint8), np.zeros((TILE_PX, TILE_PX), np.uint8),
                        options.fmt, options.quality)
    levels: dict[int, int] = {}
    ranges = {z: _tile_range(tms, info.bounds_lonlat, z) for z in range(info.minzoom, info.maxzoom + 1)}
    total = sum((x1 - x0 + 1) * (y1 - y0 + 1) for x0, y0, x1, y1 in ranges.values())
    done = 0
    B = max(1, options.block)
    for z, (x0, y0, x1, y1) in sorted(ranges.items(), reverse=True):
        n = 0
        for by in range(y0, y1 + 1, B):
            for bx in range(x0, x1 + 1, B):
                nx, ny = min(B, x1 - bx + 1), min(B, y1 - by + 1)
                ul = tms.xy_bounds(morecantile.Tile(bx, by, z))
                lr = tms.xy_bounds(morecantile.Tile(bx + nx - 1, by + ny - 1, z))
                block = _read_block(ds, tms, (ul.left, lr.bottom, lr.right, ul.top), nx * TILE_PX, ny * TILE_PX,
                                    options.resampling)
                for j in range(ny):
                    for i in range(nx):
                        x, y = bx + i, by + j
                        rel = f"{z}/{x}/{tms_y(y, z, tms)}.{options.fmt}"
                        blob = empty
                        if block is not None:
                            sl = (slice(j * TILE_PX, (j + 1) * TILE_PX), slice(i * TILE_PX, (i + 1) * TILE_PX))
                            m = block[1][sl]
                            if m.any():
                                blob = encode_tile(block[0][(slice(None), *sl)], m, options.fmt, options.quality)
                        staging.write_bytes(rel, blob)
                        info.tiles += 1
                        info.bytes += len(blob)
                        n += 1
                done += nx * ny
                report(progress, "tiles", done, total)
        levels[z] = n
    return levels
