"""Terrain: DEM sampling, quantized-mesh encoding/decoding, the pyramid and layer.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from core.frames import geoid_undulation, projected_to_lonlat
from pipelines.dem import DemSampler, sample_dem
from pipelines.terrain import TerrainOptions, build_terrain
from tiles.terrain import (
    QMAX,
    complete_borders,
    decode_tile,
    encode_tile,
    interpolate_height,
    mesh_heightmap,
    tile_bounds,
    tile_lonlat_grid,
    tile_range,
)

X0, Y0, RES, N = 535_600.0, 3_644_600.0, 2.0, 400  # EPSG:4548, 800 m x 800 m


def surface(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Orthometric test terrain: gentle hills around 18 m."""
    return 18.0 + 3.0 * np.sin((x - X0) / 90.0) + 2.0 * np.cos((y - Y0) / 140.0)


def write_dem(path: Path, hole: bool = True) -> Path:
    cols = X0 + RES * (np.arange(N) + 0.5)
    rows = Y0 - RES * (np.arange(N) + 0.5)
    xx, yy = np.meshgrid(cols, rows)
    h = surface(xx, yy).astype(np.float32)
    if hole:
        h[200:210, 100:110] = -9999.0
    with rasterio.open(path, "w", driver="GTiff", width=N, height=N, count=1, dtype="float32",
                       crs="EPSG:4548", transform=from_origin(X0, Y0, RES, RES), nodata=-9999.0) as ds:
        ds.write(h, 1)
    return path


def write_water(path: Path) -> Path:
    import geopandas as gpd
    from shapely.geometry import box

    gdf = gpd.GeoDataFrame({"id": ["WA01"], "name": ["pond"], "kind": ["lake"], "water_level": [16.0]},
                           geometry=[box(X0 + 300, Y0 - 500, X0 + 500, Y0 - 300)], crs="EPSG:4548")
    gdf.to_file(path, layer="water", driver="GPKG")
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, object]:
    d = tmp_path_factory.mktemp("terrain")
    dem = write_dem(d / "dem.tif")
    water = write_water(d / "water.gpkg")
    out = d / "terrain"
    result = build_terrain(dem, out, TerrainOptions(water=water, max_level=16, max_error=0.1))
    return dem, out, result


def _tiles_at(out: Path, z: int) -> dict[tuple[int, int], bytes]:
    return {(int(p.parent.name), int(p.stem)): p.read_bytes() for p in (out / str(z)).glob("*/*.terrain")}


# ----------------------------------------------------------------------------- DEM sampling
def test_sample_dem_bilinear_nodata_and_crs(tmp_path: Path) -> None:
    dem = write_dem(tmp_path / "dem.tif")
    x = X0 + np.array([1.0, 101.3, 555.5, 799.0])
    y = Y0 - np.array([1.0, 201.7, 333.3, 799.0])
    h = sample_dem(dem, x, y, 4548)
    assert np.allclose(h, surface(x, y), atol=0.01)
    # the same points given in lon/lat
    lon, lat = projected_to_lonlat(x, y, 4548)
    assert np.allclose(sample_dem(dem, lon, lat, 4326), h, atol=1e-6)
    # centre of the nodata hole: NaN; its rim and outside the raster's half-pixel margin
    hole_x, hole_y = X0 + 210.0, Y0 - 410.0
    rim_x, rim_y = X0 + 199.5, Y0 - 410.0
    far = sample_dem(dem, np.array([hole_x, rim_x, X0 - 50.0]), np.array([hole_y, rim_y, Y0]), 4548)
    assert np.isnan(far[0]) and np.isfinite(far[1]) and np.isnan(far[2])
    assert abs(far[1] - surface(np.array([X0 + 199.0]), np.array([rim_y]))[0]) < 0.05


def test_dem_overviews_average(tmp_path: Path) -> None:
    sampler = DemSampler(write_dem(tmp_path / "dem.tif", hole=False))
    x, y = X0 + np.array([400.0]), Y0 - np.array([400.0])
    fine = sampler.sample(x, y)
    coarse = sampler.sample(x, y, spacing=16.0)
    assert abs(fine[0] - coarse[0]) < 0.1


# ----------------------------------------------------------------------------- pure meshing
def test_mesh_has_every_border_point_and_roundtrips() -> None:
    b = tile_bounds(16, 2 * 53452 + 1, 2 * 12369)
    lon, lat = tile_lonlat_grid(b, 257)
    h = 20 + 4 * np.sin(lon * 4000) * np.cos(lat * 3000)
    positions, triangles = mesh_heightmap(h, b, 0.2)
    for edge_lon in (b[0], b[2]):
        assert np.sum(positions[:, 0] == edge_lon) == 257
    for edge_lat in (b[1], b[3]):
        assert np.sum(positions[:, 1] == edge_lat) == 257
    p = positions[:, :2]
    a, bb, c = p[triangles[:, 0]], p[triangles[:, 1]], p[triangles[:, 2]]
    cross = (bb[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (bb[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    assert np.all(cross > 0), "triangles must be counter-clockwise"
    tile = decode_tile(encode_tile(positions, triangles, b, 0))
    assert tile.gzipped and len(tile.u) == len(positions) and len(tile.triangles) == len(triangles)
    assert len(tile.west) == len(tile.east) == len(tile.south) == len(tile.north) == 257
    assert set(tile.u[tile.west]) == {0} and set(tile.v[tile.north]) == {QMAX}
    assert tile.extensions[1] and tile.watermask() == 0
    # the surface Cesium draws stays within max_error (+ quantisation) of the input grid
    rng = np.random.default_rng(1)
    qlon = b[0] + rng.random(40) * (b[2] - b[0])
    qlat = b[1] + rng.random(40) * (b[3] - b[1])
    want = 20 + 4 * np.sin(qlon * 4000) * np.cos(qlat * 3000)
    assert np.nanmax(np.abs(interpolate_height(tile, b, qlon, qlat) - want)) < 0.3


def test_complete_borders_splits_border_triangles() -> None:
    # one quad of a 5x5 grid as two triangles: all 16 border points must appear
    verts = np.array([[0, 0], [4, 0], [4, 4], [0, 4]])
    tris = np.array([[0, 3, 2], [0, 2, 1]])
    v2, t2 = complete_borders(verts, tris, 5)
    border = {(c, r) for c in range(5) for r in range(5) if c in (0, 4) or r in (0, 4)}
    assert {tuple(v) for v in v2} == border
    # area preserved
    def area(v: np.ndarray, t: np.ndarray) -> float:
        a, b, c = v[t[:, 0]], v[t[:, 1]], v[t[:, 2]]
        d1, d2 = b - a, c - a
        return float(np.abs(d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]).sum() / 2)
    assert area(v2.astype(float), t2) == pytest.approx(16.0)


# ----------------------------------------------------------------------------- the pyramid
def test_layer_json_structure(built) -> None:
    _, out, result = built
    layer = json.loads((out / "layer.json").read_text())
    assert layer["format"] == "quantized-mesh-1.0"
    assert layer["tiles"] == ["{z}/{x}/{y}.terrain"]
    assert layer["scheme"] == "tms" and layer["projection"] == "EPSG:4326"
    assert layer["extensions"] == ["octvertexnormals", "watermask"]
    assert layer["version"] and len(layer["bounds"]) == 4
    assert layer["maxzoom"] == 16 and len(layer["available"]) == 17
    assert layer["available"][0] == [{"startX": 0, "startY": 0, "endX": 1, "endY": 0}]
    for z, ranges in enumerate(layer["available"]):
        for r in ranges:
            for x in range(r["startX"], r["endX"] + 1):
                for y in range(r["startY"], r["endY"] + 1):
                    data = (out / str(z) / str(x) / f"{y}.terrain").read_bytes()
                    assert data[:2] == b"\x1f\x8b"  # gzip
    # exactly the available tiles exist
    files = sum(1 for _ in out.glob("*/*/*.terrain"))
    declared = sum((r["endX"] - r["startX"] + 1) * (r["endY"] - r["startY"] + 1)
                   for rs in layer["available"] for r in rs)
    assert files == result.tiles == declared
    assert layer["onemap"]["content_encoding"] == "gzip"


def test_heights_are_dem_plus_geoid(built) -> None:
    dem, out, _ = built
    z = 16
    checked = 0
    for (x, y), data in _tiles_at(out, z).items():
        b = tile_bounds(z, x, y)
        tile = decode_tile(data)
        # vertices sit on the 257 x 257 sampling grid: snap the quantised u/v back onto it
        col = np.rint(tile.u * 256 / QMAX)
        row = np.rint(tile.v * 256 / QMAX)
        lon = b[0] + col / 256 * (b[2] - b[0])
        lat = b[1] + row / 256 * (b[3] - b[1])
        ortho = sample_dem(dem, lon, lat, 4326)
        ok = np.isfinite(ortho)
        n = geoid_undulation(lon[ok], lat[ok])
        assert np.all(np.abs(n) > 1.0)  # the geoid is not silently zero near Bengbu
        quant = (tile.max_height - tile.min_height) / QMAX
        err = np.abs(tile.heights[ok] - (ortho[ok] + n))
        assert err.max() < 0.01 + quant, (x, y, err.max())
        checked += ok.sum()
    assert checked > 1000
    # and the rendered surface between vertices at known survey points
    xs = X0 + np.array([50.0, 333.0, 512.0, 700.0])
    ys = Y0 - np.array([60.0, 250.0, 480.0, 650.0])
    lon, lat = projected_to_lonlat(xs, ys, 4548)
    expected = surface(xs, ys) + geoid_undulation(lon, lat)
    for i in range(len(xs)):
        x0, y0, _, _ = tile_range((lon[i], lat[i], lon[i], lat[i]), z)
        b = tile_bounds(z, x0, y0)
        got = interpolate_height(decode_tile((out / str(z) / str(x0) / f"{y0}.terrain").read_bytes()),
                                 b, lon[i:i + 1], lat[i:i + 1])[0]
        assert abs(got - expected[i]) < 0.15


def test_neighbouring_edges_match(built) -> None:
    _, out, _ = built
    z = 16
    tiles = {k: decode_tile(v) for k, v in _tiles_at(out, z).items()}
    pairs = 0
    for (x, y), t in tiles.items():
        right = tiles.get((x + 1, y))
        if right is not None:
            a = sorted(zip(t.v[t.east], np.round(t.heights[t.east], 2), strict=True))
            b = sorted(zip(right.v[right.west], np.round(right.heights[right.west], 2), strict=True))
            assert [p[0] for p in a] == [p[0] for p in b]
            assert np.allclose([p[1] for p in a], [p[1] for p in b], atol=0.02)
            pairs += 1
        up = tiles.get((x, y + 1))
        if up is not None:
            a = sorted(zip(t.u[t.north], t.heights[t.north], strict=True))
            b = sorted(zip(up.u[up.south], up.heights[up.south], strict=True))
            assert [p[0] for p in a] == [p[0] for p in b]
            assert np.allclose([p[1] for p in a], [p[1] for p in b], atol=0.01)
            pairs += 1
    assert pairs >= 2


def test_watermask_from_water_polygons(built) -> None:
    _, out, _ = built
    z = 16
    lon, lat = projected_to_lonlat(np.array([X0 + 400.0]), np.array([Y0 - 400.0]), 4548)
    x, y, _, _ = tile_range((lon[0], lat[0], lon[0], lat[0]), z)
    tile = decode_tile((out / str(z) / str(x) / f"{y}.terrain").read_bytes())
    mask = tile.watermask()
    assert isinstance(mask, np.ndarray) and mask.shape == (256, 256)
    b = tile_bounds(z, x, y)
    col = int((lon[0] - b[0]) / (b[2] - b[0]) * 256)
    row = int((b[3] - lat[0]) / (b[3] - b[1]) * 256)
    assert mask[row, col] == 255
    # a tile far from the pond: one land byte
    west = decode_tile((out / "0" / "0" / "0.terrain").read_bytes())
    assert west.watermask() == 0
