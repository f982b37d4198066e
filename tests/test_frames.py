"""Frames: geoid, projected ↔ ECEF round trips, ENU and glTF axes (tiles/frames.py)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from pyproj import CRS, Transformer

from core import frames

GTX = Path("/usr/share/proj") / frames.GEOID_GRID
BENGBU_LON, BENGBU_LAT = 117.39, 32.93

pytestmark = pytest.mark.skipif(not GTX.exists(), reason=f"{GTX} missing (apt-get install proj-data)")


def egm96_from_gtx(lon: float, lat: float) -> float:
    """Independent bilinear read of the .gtx grid (big-endian header + float32 rows south→north)."""
    data = GTX.read_bytes()
    lat0, lon0, dlat, dlon, rows, cols = struct.unpack(">4d2i", data[:40])
    grid = np.frombuffer(data, dtype=">f4", offset=40, count=rows * cols).reshape(rows, cols)
    fr = (lat - lat0) / dlat
    fc = ((lon - lon0) % 360.0) / dlon
    r, c = int(fr), int(fc)
    tr, tc = fr - r, fc - c
    return float((1 - tr) * (1 - tc) * grid[r, c] + (1 - tr) * tc * grid[r, c + 1]
                 + tr * (1 - tc) * grid[r + 1, c] + tr * tc * grid[r + 1, c + 1])


def test_geoid_near_bengbu_matches_the_grid() -> None:
    n = frames.geoid_undulation(np.array([BENGBU_LON]), np.array([BENGBU_LAT]))[0]
    assert n == pytest.approx(egm96_from_gtx(BENGBU_LON, BENGBU_LAT), abs=0.01)
    # EGM96 N is about -4.8 m here: heights that ignore it sink buildings by ~5 m
    assert -6.0 < n < -3.5


def test_orthometric_to_ecef_applies_the_geoid() -> None:
    lon, lat = np.array([BENGBU_LON]), np.array([BENGBU_LAT])
    ecef = frames.lonlat_orthometric_to_ecef(lon, lat, np.array([20.0]))
    lon2, lat2, h_ell = frames.ecef_to_lonlat_ellipsoidal(ecef)[0]
    assert (lon2, lat2) == pytest.approx((BENGBU_LON, BENGBU_LAT), abs=1e-9)
    assert h_ell - 20.0 == pytest.approx(egm96_from_gtx(BENGBU_LON, BENGBU_LAT), abs=0.01)


@pytest.mark.parametrize("epsg", [4548, 32650, 3857])
def test_projected_ecef_round_trip_within_5cm(epsg: int) -> None:
    to_proj = Transformer.from_crs(4490, epsg, always_xy=True)
    lon = BENGBU_LON + np.array([-0.02, 0.0, 0.013, 0.02])
    lat = BENGBU_LAT + np.array([-0.015, 0.0, 0.007, 0.02])
    x, y = to_proj.transform(lon, lat)
    h_ortho = np.array([15.0, 22.5, 80.0, 150.0])
    ecef = frames.projected_orthometric_to_ecef(x, y, h_ortho, f"EPSG:{epsg}")
    back = frames.ecef_to_lonlat_ellipsoidal(ecef)
    n = frames.geoid_undulation(back[:, 0], back[:, 1])
    x2, y2 = Transformer.from_crs(4490, epsg, always_xy=True).transform(back[:, 0], back[:, 1])
    err = np.sqrt((x2 - x) ** 2 + (y2 - y) ** 2 + (back[:, 2] - n - h_ortho) ** 2)
    assert err.max() < 0.05


def test_enu_frame_round_trip_and_tileset_transform() -> None:
    frame = frames.EnuFrame.at_lonlat(BENGBU_LON, BENGBU_LAT, 15.0)
    enu = np.array([[0.0, 0.0, 0.0], [100.0, -250.0, 30.0], [-1500.0, 900.0, 5.0]])
    ecef = frame.enu_to_ecef(enu)
    assert np.abs(frame.ecef_to_enu(ecef) - enu).max() < 1e-6
    m = np.array(frame.tileset_transform()).reshape(4, 4).T  # column-major → matrix
    hom = np.column_stack([enu, np.ones(len(enu))]) @ m.T
    assert np.abs(hom[:, :3] - ecef).max() < 1e-6
    # up is up: 30 m up in ENU is 30 m more ellipsoidal height
    h = frames.ecef_to_lonlat_ellipsoidal(frame.enu_to_ecef(np.array([[0.0, 0.0, 30.0]])))[0, 2]
    assert h == pytest.approx(45.0, abs=1e-6)


def test_gltf_axes() -> None:
    enu = np.array([[1.0, 2.0, 3.0]])
    assert frames.enu_to_gltf(enu).tolist() == [[1.0, 3.0, -2.0]]
    assert frames.gltf_to_enu(frames.enu_to_gltf(enu)).tolist() == enu.tolist()


def test_lonlat_crs_for_datums() -> None:
    assert frames.lonlat_crs_for(4548).equals(CRS.from_epsg(4490))
    assert frames.lonlat_crs_for(32650).equals(CRS.from_epsg(4326))
    # Beijing 1954 / Xian 1980 are not WGS84-like: go through a real datum transformation
    assert frames.lonlat_crs_for(2435).equals(CRS.from_epsg(4326))


def test_local_tm_is_metric_and_centred() -> None:
    crs = frames.local_tm_crs(BENGBU_LON, BENGBU_LAT, 4548)
    x, y = Transformer.from_crs(4490, crs, always_xy=True).transform(BENGBU_LON, BENGBU_LAT)
    assert abs(x) < 1e-6 and abs(y) < 1e-6
    x1, _ = Transformer.from_crs(4490, crs, always_xy=True).transform(BENGBU_LON + 0.01, BENGBU_LAT)
    assert x1 == pytest.approx(934.6, abs=1.0)  # 0.01° of longitude at 32.93°N
