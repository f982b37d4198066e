"""Orthophoto -> imagery pyramid (pipelines/imagery.py) and its serving under /imagery/.

A 240 m x 240 m crop of the sample orthophoto keeps the pyramid small (~40 tiles).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import morecantile
import numpy as np
import pytest
import rasterio
import shapely
from fastapi.testclient import TestClient
from pyproj import Transformer
from rasterio.features import rasterize
from rasterio.transform import from_origin
from rasterio.windows import from_bounds

from core.errors import InputError
from data.generator.ortho import PALETTE, ROOF_RGB
from pipelines.imagery import ImageryOptions, build_imagery
from tests.api_support import make_settings
from tiles.imagery import decode_tile, validate_imagery

CROP_M = 240.0


@pytest.fixture(scope="module")
def crop(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, gpd.GeoDataFrame]:
    """A crop of clean/ortho.tif around a residential building, and the buildings inside it."""
    clean = sample_dir / "clean"
    b = gpd.read_file(clean / "buildings.gpkg")
    res = b[b["use"] == "residential"]
    c = res.geometry.iloc[len(res) // 2].centroid
    x0, y0 = round(c.x) - CROP_M / 2, round(c.y) - CROP_M / 2
    box = (x0, y0, x0 + CROP_M, y0 + CROP_M)
    out = tmp_path_factory.mktemp("imagery") / "crop.tif"
    with rasterio.open(clean / "ortho.tif") as ds:
        win = from_bounds(*box, transform=ds.transform)
        arr = ds.read(window=win)
        profile = {"driver": "GTiff", "dtype": "uint8", "count": 3, "width": arr.shape[2], "height": arr.shape[1],
                   "crs": ds.crs, "transform": from_origin(box[0], box[3], 0.25, 0.25), "tiled": True,
                   "compress": "deflate"}
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(arr)
    inside = b[b.geometry.within(shapely.box(*box).buffer(-5))]
    return out, inside


@pytest.fixture(scope="module")
def pyramid(crop: tuple[Path, gpd.GeoDataFrame], tmp_path_factory: pytest.TempPathFactory) -> Path:
    tiles_dir = tmp_path_factory.mktemp("tiles")
    res = build_imagery(crop[0], tiles_dir / "imagery", ImageryOptions())
    assert res.info.tiles > 0 and res.info.maxzoom == 18
    return tiles_dir / "imagery"


def _mosaic(root: Path, z: int) -> tuple[np.ndarray, object]:
    """All level-z tiles as one RGBA array + its lon/lat transform (WorldCRS84Quad, TMS rows)."""
    tms = morecantile.tms.get("WorldCRS84Quad")
    files = sorted((root / str(z)).glob("*/*.webp"))
    xs = sorted({int(f.parent.name) for f in files})
    ys = sorted({int(f.stem) for f in files})
    rows = tms.matrix(z).matrixHeight
    img = np.zeros(((ys[-1] - ys[0] + 1) * 256, (xs[-1] - xs[0] + 1) * 256, 4), np.uint8)
    for f in files:
        x, y_tms = int(f.parent.name), int(f.stem)
        y_xyz = rows - 1 - y_tms
        r0 = (y_xyz - (rows - 1 - ys[-1])) * 256
        c0 = (x - xs[0]) * 256
        img[r0:r0 + 256, c0:c0 + 256] = decode_tile(f.read_bytes())
    ul = tms.xy_bounds(morecantile.Tile(xs[0], rows - 1 - ys[-1], z))
    cell = float(tms.matrix(z).cellSize)
    return img, from_origin(ul.left, ul.top, cell, cell)


def _near(img: np.ndarray, rgb, tol: int) -> np.ndarray:
    return (np.abs(img[..., :3].astype(int) - np.array(rgb)).max(axis=2) <= tol) & (img[..., 3] == 255)


def _near_blend(img: np.ndarray, a, b, tol: float) -> np.ndarray:
    """Pixels within ``tol`` of the RGB segment a-b (a 1-px line resampled into its background)."""
    p = img[..., :3].astype(float)
    a, b = np.array(a, float), np.array(b, float)
    t = np.clip(((p - a) @ (b - a)) / ((b - a) @ (b - a)), 0, 1)
    d = np.linalg.norm(p - (a + t[..., None] * (b - a)), axis=-1)
    return (d <= tol) & (img[..., 3] == 255)


def _grow(mask: np.ndarray, n: int = 1) -> np.ndarray:
    out = mask.copy()
    for _ in range(n):
        m = out.copy()
        m[1:] |= out[:-1]
        m[:-1] |= out[1:]
        m[:, 1:] |= out[:, :-1]
        m[:, :-1] |= out[:, 1:]
        out = m
    return out


def test_metadata_cesium_reads(pyramid: Path) -> None:
    assert validate_imagery(pyramid) == []
    root = ET.parse(pyramid / "tilemapresource.xml").getroot()
    sets = root.find("TileSets")
    assert sets.get("profile") == "geodetic"
    orders = [int(s.get("order")) for s in sets.findall("TileSet")]
    assert orders == list(range(orders[0], 19))
    bb = root.find("BoundingBox")
    assert 117.3 < float(bb.get("minx")) < float(bb.get("maxx")) < 117.5  # lon first (not gdal2tiles' flip)
    assert 32.8 < float(bb.get("miny")) < float(bb.get("maxy")) < 33.0
    assert root.find("TileFormat").get("extension") == "webp"


def test_transparent_outside_the_data(pyramid: Path) -> None:
    img, _ = _mosaic(pyramid, 18)
    alpha = img[..., 3]
    assert (alpha == 0).any() and (alpha == 255).any()
    assert set(np.unique(alpha)) <= {0, 255}


def test_roofs_and_roads_line_up_within_one_pixel(pyramid: Path, crop, sample_dir: Path) -> None:
    """At the finest level, each roof's orthophoto colour covers its footprint (rasterized from
    buildings.gpkg in lon/lat) shrunk by one pixel, and stays inside it grown by one pixel."""
    _, inside = crop
    img, tr = _mosaic(pyramid, 18)
    to_lonlat = Transformer.from_crs("EPSG:4548", "OGC:CRS84", always_xy=True)
    checked = 0
    for use, rgb in ROOF_RGB.items():
        sel = inside[inside["use"] == use]
        if sel.empty:
            continue
        geoms = [shapely.transform(g, lambda c: np.column_stack(to_lonlat.transform(c[:, 0], c[:, 1])))
                 for g in sel.geometry]
        foot = rasterize(geoms, out_shape=img.shape[:2], transform=tr, fill=0, default_value=1, dtype="uint8") > 0
        roof = _near(img, rgb, 40)
        core = ~_grow(~foot, 1)  # footprint eroded by one pixel
        assert roof[core].mean() > 0.97, f"{use}: roof colour on {roof[core].mean():.3f} of the footprints"
        # roof-coloured pixels outside the footprint grown by one pixel (colour look-alikes aside)
        outside = roof & ~_grow(foot, 1)
        assert outside[_grow(foot, 4)].mean() < 0.02, use
        checked += len(sel)
    assert checked >= 5
    roads = gpd.read_file(sample_dir / "clean" / "roads.gpkg")
    roads = roads[roads.geometry.intersects(shapely.box(*inside.total_bounds))]
    carriage = [shapely.transform(g.buffer(w / 2, cap_style="flat"),
                                  lambda c: np.column_stack(to_lonlat.transform(c[:, 0], c[:, 1])))
                for g, w in zip(roads.geometry, roads["width"], strict=True)]
    road = rasterize(carriage, out_shape=img.shape[:2], transform=tr, fill=0, default_value=1, dtype="uint8") > 0
    core = ~_grow(~road, 1) & (img[..., 3] == 255)
    paint = (_near_blend(img, PALETTE["asphalt"], PALETTE["marking_white"], 40)
             | _near_blend(img, PALETTE["asphalt"], PALETTE["marking_yellow"], 40))
    shade = _near(img, tuple(int(v * 0.58) for v in PALETTE["asphalt"]), 30)  # shadows on the road
    crowns = _near(img, PALETTE["crown"], 40) | _near(img, tuple(int(v * 0.58) for v in PALETTE["crown"]), 30)
    assert core.sum() > 1000
    assert (paint | shade | crowns)[core].mean() > 0.95


def test_unchanged_source_is_reused(pyramid: Path, crop) -> None:
    again = build_imagery(crop[0], pyramid, ImageryOptions())
    assert again.reused and again.info.tiles > 0


def test_not_a_raster_is_an_input_error(tmp_path: Path) -> None:
    bad = tmp_path / "ortho.tif"
    bad.write_text("not a tiff")
    with pytest.raises(InputError, match="ortho.tif"):
        build_imagery(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def client(pyramid: Path) -> Iterator[TestClient]:
    from api.app import create_app

    with TestClient(create_app(make_settings("postgresql://x@127.0.0.1:9/x", pyramid.parent))) as c:
        yield c


def test_api_serves_imagery_with_etag(client: TestClient, pyramid: Path) -> None:
    r = client.get("/imagery/tilemapresource.xml")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/xml")
    tile = next((pyramid / "18").glob("*/*.webp")).relative_to(pyramid).as_posix()
    r = client.get(f"/imagery/{tile}")
    assert r.status_code == 200 and r.headers["content-type"] == "image/webp"
    etag = r.headers["etag"]
    assert "max-age" in r.headers["cache-control"]
    again = client.get(f"/imagery/{tile}", headers={"If-None-Match": etag})
    assert again.status_code == 304 and not again.content
    assert client.get("/imagery/18/0/0.webp").status_code == 404
    assert client.get("/imagery/../../etc/passwd").status_code == 404


def test_docs_are_offline(client: TestClient) -> None:
    r = client.get("/docs")
    assert r.status_code == 200
    assert "/swagger/swagger-ui-bundle.js" in r.text and "cdn" not in r.text.lower()
    js = client.get("/swagger/swagger-ui-bundle.js")
    assert js.status_code == 200 and len(js.content) > 100_000


def test_viewer_config_has_no_online_basemap_by_default(client: TestClient) -> None:
    assert client.get("/viewer-config").json() == {"basemap": None}
