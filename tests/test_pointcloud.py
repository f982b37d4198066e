"""Point cloud: LAS (orthometric, EPSG:4548) → pnts tileset in ECEF with ellipsoidal heights."""

from __future__ import annotations

import json
from pathlib import Path

import laspy
import numpy as np
import pytest
from pyproj import CRS

from core.frames import ecef_to_lonlat_ellipsoidal, geoid_undulation, projected_to_lonlat
from pipelines.pointcloud import PointCloudError, PointCloudOptions, build_pointcloud, resolve_crs
from tiles.formats import pnts_geometry
from tiles.validate import validate_path
from tiles.volumes import column_major

X0, Y0 = 536_000.0, 3_644_000.0


def write_las(path: Path, n: int = 1500, crs: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    header = laspy.LasHeader(point_format=7, version="1.4")
    header.scales = np.array([0.001, 0.001, 0.001])
    header.offsets = np.array([X0, Y0, 0.0])
    if crs:
        header.add_crs(CRS.from_epsg(4548))
    las = laspy.LasData(header)
    x = X0 + rng.random(n) * 300.0
    y = Y0 + rng.random(n) * 300.0
    z = 17.0 + rng.random(n) * 25.0
    las.x, las.y, las.z = x, y, z
    grey = (rng.random(n) * 65535).astype(np.uint16)
    las.red, las.green, las.blue = grey, grey, grey
    las.classification = np.where(z > 20, 6, 2).astype(np.uint8)
    las.write(path)
    return np.asarray(las.x), np.asarray(las.y), np.asarray(las.z)


def tileset_points_ecef(tileset: Path) -> dict[str, np.ndarray]:
    """pnts positions per content URI, in ECEF (transform chain + RTC_CENTER applied)."""
    ts = json.loads(tileset.read_text())
    out = {}
    stack = [(ts["root"], np.eye(4))]
    while stack:
        tile, parent = stack.pop()
        world = parent @ column_major(tile.get("transform"))
        if "content" in tile:
            geo = pnts_geometry((tileset.parent / tile["content"]["uri"]).read_bytes())
            assert not geo.issues
            out[tile["content"]["uri"]] = geo.points @ world[:3, :3].T + world[:3, 3]
        stack.extend((c, world) for c in tile.get("children", []))
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("pc")
    las = d / "pointcloud.las"
    xyz = write_las(las)
    result = build_pointcloud(las, d / "out", PointCloudOptions(jobs=1))
    return xyz, d / "out", result


def test_tileset_written_and_valid(built) -> None:
    _, out, result = built
    assert (out / "tileset.json").exists()
    assert result.points == 1500 and result.tiles >= 1 and result.crs_in == "EPSG:4548"
    report = validate_path(out, gltf=False)
    assert report.ok, [str(i) for i in report.issues]
    assert report.contents == result.tiles


def test_points_at_the_right_place_with_geoid(built) -> None:
    (x, y, z), out, result = built
    lon, lat = projected_to_lonlat(x, y, 4548)
    n = geoid_undulation(lon, lat)
    assert np.all(np.abs(n) > 1.0)
    assert result.geoid_range[0] == pytest.approx(n.min(), abs=0.01)
    contents = tileset_points_ecef(out / "tileset.json")
    seen = np.zeros(len(x), dtype=bool)
    k = 111_320.0
    for uri, ecef in contents.items():
        got = ecef_to_lonlat_ellipsoidal(ecef)
        # metres east/north between every decoded point and every input point
        de = (got[:, None, 0] - lon[None, :]) * k * np.cos(np.radians(lat[None, :]))
        dn = (got[:, None, 1] - lat[None, :]) * k
        dist = np.hypot(de, dn)
        nearest = dist.argmin(axis=1)
        dh = got[:, 2] - (z[nearest] + n[nearest])
        # py3dtiles' root preview.pnts (shown only from > 500 m) keeps float32 positions far
        # from its origin: ~0.3 m rounding. Every other tile is exact.
        tol = 1.0 if uri == "preview.pnts" else 0.05
        assert dist[np.arange(len(got)), nearest].max() < tol, uri
        assert np.abs(dh).max() < tol, uri
        if uri != "preview.pnts":
            seen[nearest] = True
    assert seen.all(), "every input point must reach the tiles"


def test_crs_from_header_or_option(tmp_path: Path) -> None:
    with_crs = tmp_path / "a.las"
    write_las(with_crs, n=10)
    assert resolve_crs(with_crs, None).to_epsg() == 4548
    without = tmp_path / "b.las"
    write_las(without, n=10, crs=False)
    with pytest.raises(PointCloudError, match="declares no CRS"):
        resolve_crs(without, None)
    assert resolve_crs(without, 4548).to_epsg() == 4548
    with pytest.raises(PointCloudError, match="no such file"):
        build_pointcloud(tmp_path / "missing.las", tmp_path / "o")
