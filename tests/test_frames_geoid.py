"""--geoid models (egm96 | none | a user GTX grid) and the working CRS chosen from the data."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from pyproj import CRS, Transformer

from core import frames
from core.errors import ConfigError

GTX = Path("/usr/share/proj") / frames.GEOID_GRID
pytestmark = pytest.mark.skipif(not GTX.exists(), reason=f"{GTX} missing (apt-get install proj-data)")


def write_gtx(path: Path, value: float, lon0: float = 116.0, lat0: float = 32.0, n: int = 9,
              step: float = 0.5) -> Path:
    """A GTX grid (big-endian header: lat0, lon0, dlat, dlon, rows, cols; float32 rows south→north)
    holding one constant undulation."""
    header = struct.pack(">4d2i", lat0, lon0, step, step, n, n)
    path.write_bytes(header + np.full(n * n, value, dtype=">f4").tobytes())
    return path


def _h_of(ecef: np.ndarray) -> np.ndarray:
    return frames.ecef_to_lonlat_ellipsoidal(ecef)[:, 2]


def test_user_gtx_grid_shifts_ecef_heights_by_exactly_its_value(tmp_path: Path) -> None:
    grid = write_gtx(tmp_path / "national_quasigeoid.gtx", 10.0)
    lon = np.array([117.30, 117.39, 117.45])
    lat = np.array([32.90, 32.93, 32.97])
    h_ortho = np.array([0.0, 21.5, 140.0])
    with frames.using_geoid("none") as g:
        assert g.metadata()["geoid"] == "none"
        ecef_none = frames.lonlat_orthometric_to_ecef(lon, lat, h_ortho)
    with frames.using_geoid(grid) as g:
        assert g.metadata() == {"geoid": "national_quasigeoid.gtx", "geoid_grid": "national_quasigeoid.gtx",
                                "heights": "orthometric + geoid undulation N = ellipsoidal (WGS84)"}
        ecef_grid = frames.lonlat_orthometric_to_ecef(lon, lat, h_ortho)
        # the projected → ECEF path (EPSG:4548, a delivery) too
        x, y = Transformer.from_crs(4490, 4548, always_xy=True).transform(lon, lat)
        ecef_proj = frames.projected_orthometric_to_ecef(np.asarray(x), np.asarray(y), h_ortho, 4548)
    assert np.allclose(_h_of(ecef_none), h_ortho, atol=1e-6)
    assert np.allclose(_h_of(ecef_grid) - _h_of(ecef_none), 10.0, atol=1e-6)
    assert np.allclose(_h_of(ecef_proj) - h_ortho, 10.0, atol=1e-6)
    # the shift is vertical: same lon/lat
    ll_none = frames.ecef_to_lonlat_ellipsoidal(ecef_none)
    ll_grid = frames.ecef_to_lonlat_ellipsoidal(ecef_grid)
    assert np.allclose(ll_none[:, :2], ll_grid[:, :2], atol=1e-10)
    # default is EGM96 again outside the block
    n = frames.geoid_undulation(lon, lat)
    assert np.all((n < -1) & (n > -10))  # EGM96 near Bengbu is ≈ -3..-5 m


def test_egm96_is_the_default_and_recorded() -> None:
    g = frames.active_geoid()
    assert g.name == "egm96" and g.metadata()["geoid_grid"] == frames.GEOID_GRID
    with frames.using_geoid(None) as g2:
        assert g2 == g


def test_missing_or_unreadable_grid_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        frames.resolve_geoid(tmp_path / "nope.gtx")
    bad = tmp_path / "bad.gtx"
    bad.write_bytes(b"this is not a grid")
    with pytest.raises(ConfigError, match="cannot be"):
        frames.resolve_geoid(bad)


def test_points_outside_the_user_grid_are_an_input_error(tmp_path: Path) -> None:
    grid = write_gtx(tmp_path / "small.gtx", 10.0)
    with frames.using_geoid(grid), pytest.raises(frames.OutsideGeoidError, match="no value"):
        frames.geoid_undulation(np.array([4.36]), np.array([52.01]))  # Delft


@pytest.mark.parametrize(("epsg", "lonlat", "keeps_own"), [
    (4548, (117.39, 32.93), True),      # the district's deliveries: used as is
    (32650, (117.39, 32.93), True),     # UTM 50N, k 0.9996
    (28992, (4.36, 52.01), True),       # RD New near Delft
    (3067, (24.95, 60.17), True),       # ETRS-TM35FIN, Helsinki
    (4548, (24.95, 60.17), False),      # a CM-117°E projection used in Helsinki: never
    (3857, (4.36, 52.01), False),       # Web Mercator: scale 1.6 at 52°N
    (4326, (4.36, 52.01), False),       # lon/lat: not metric
])
def test_working_crs_is_chosen_from_the_data(epsg: int, lonlat: tuple[float, float], keeps_own: bool) -> None:
    crs = CRS.from_epsg(epsg)
    lon = np.array([lonlat[0] - 0.01, lonlat[0] + 0.01])
    lat = np.array([lonlat[1] - 0.01, lonlat[1] + 0.01])
    x, y = Transformer.from_crs(4326, crs, always_xy=True).transform(lon, lat)
    work = frames.working_crs_for((x[0], y[0], x[1], y[1]), crs)
    if keeps_own:
        assert work.equals(crs)
    else:
        assert work.name == "onemap local TM"
        # centred on the data, on the data's own datum
        cx, cy = Transformer.from_crs(4326, work, always_xy=True).transform(*lonlat)
        assert abs(cx) < 1500 and abs(cy) < 1500
    # the round trip source → working → source is exact (< 1 mm)
    wx, wy = frames.transform_xy(np.asarray(x), np.asarray(y), crs, work)
    bx, by = frames.transform_xy(wx, wy, work, crs)
    assert np.allclose(bx, x, atol=1e-3) and np.allclose(by, y, atol=1e-3 if epsg != 4326 else 1e-8)


def test_active_working_crs_defaults_to_the_delivery_crs() -> None:
    assert frames.active_working_crs().to_epsg() == 4548
    with frames.using_working_crs(28992) as crs:
        assert frames.active_working_crs().equals(crs)
    assert frames.active_working_crs().to_epsg() == 4548


# ------------------------------------------------------------------------------------ through the pipelines
def _llh_of_tiles(out: Path) -> np.ndarray:
    import json

    from tiles.gltf_read import read_glb

    ts = json.loads((out / "tileset.json").read_text())
    m = np.array(ts["root"]["transform"]).reshape(4, 4).T
    pts = []
    for p in sorted((out / "tiles").rglob("*.glb")):
        enu = frames.gltf_to_enu(read_glb(p.read_bytes()).attribute("POSITION").astype(np.float64))
        pts.append(frames.ecef_to_lonlat_ellipsoidal(enu @ m[:3, :3].T + m[:3, 3]))
    return np.concatenate(pts)


def test_buildings_with_a_user_grid_are_exactly_its_value_higher(tmp_path: Path) -> None:
    import json

    import geopandas as gpd
    import shapely

    from pipelines.buildings import BuildingOptions, build_buildings

    grid = write_gtx(tmp_path / "quasigeoid.gtx", 10.0)
    x0, y0 = 536_000.0, 3_644_000.0
    gpd.GeoDataFrame({"id": ["A", "B"], "height": [9.0, 21.0]},
                     geometry=[shapely.box(x0, y0, x0 + 20, y0 + 12), shapely.box(x0 + 40, y0, x0 + 52, y0 + 30)],
                     crs="EPSG:4548").to_file(tmp_path / "b.gpkg")
    outs = {}
    for geoid in ("none", str(grid)):
        out = tmp_path / ("none" if geoid == "none" else "grid")
        build_buildings(tmp_path / "b.gpkg", out, BuildingOptions(lod=1, workers=1, geoid=geoid))
        outs[geoid] = _llh_of_tiles(out)
        meta = json.loads((out / "tileset.json").read_text())["extras"]["heights"]
        assert meta["geoid"] == ("none" if geoid == "none" else "quasigeoid.gtx")
        assert json.loads((out / "report.json").read_text())["output"]["heights"] == meta
    a, b = outs["none"], outs[str(grid)]
    assert np.allclose(a[:, :2], b[:, :2], atol=1e-9)
    assert np.allclose(b[:, 2] - a[:, 2], 10.0, atol=2e-3)  # float32 glb positions


def test_cli_geoid_missing_grid_is_a_clear_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    import geopandas as gpd
    import shapely

    gpd.GeoDataFrame({"id": ["A"], "height": [9.0]}, geometry=[shapely.box(536_000, 3_644_000, 536_020, 3_644_012)],
                     crs="EPSG:4548").to_file(tmp_path / "b.gpkg")
    onemap = Path(sys.executable).parent / "onemap"
    r = subprocess.run([str(onemap), "tiles", "buildings", str(tmp_path / "b.gpkg"), "--out", str(tmp_path / "o"),
                        "--geoid", str(tmp_path / "nope.gtx")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1
    assert "nope.gtx not found" in r.stderr + r.stdout and "Traceback" not in r.stderr
