"""Heights on the ground and cameras in 3D, on the tiny district with a constructed DEM.

The DEM is written from an analytic surface (a slope with a north-south ridge); the tests compare
against that surface and PROJ's EGM96 (core.frames.geoid_undulation) directly — not against the
loader's resampling (dem_rows) or its geoid lattice:
* every CZML track position and every live position message sits 0-3 m above the terrain;
* cameras_visible() equals an independent numpy ray march (prisms, terrain, pitch, fields of view).
"""

from __future__ import annotations

import json
import math
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from pyproj import Transformer
from rasterio.transform import from_origin

from core.frames import geoid_undulation
from tests import gis_world as W

TO_4548 = Transformer.from_crs("EPSG:4490", "EPSG:4548", always_xy=True)
RIDGE_U, RIDGE_H, RIDGE_W = 200.0, 12.0, 25.0


def terrain(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Orthometric ground height at local (u, v) metres from (X0, Y0)."""
    u, v = np.asarray(u, dtype=float), np.asarray(v, dtype=float)
    return 20.0 + 0.01 * u + 0.005 * v + RIDGE_H * np.exp(-(((u - RIDGE_U) / RIDGE_W) ** 2))


@pytest.fixture()
def dem_conn(sa_conn, tmp_path: Path):  # noqa: ANN001, ANN201
    """The tiny district with the constructed DEM loaded (5 m grid); rolled back after the test."""
    from gis.loaders.dem import load_dem

    px = 2.0
    n = 300
    cols = np.arange(n) * px + px / 2 - 100  # pixel centres, local u
    rows = 500 - (np.arange(n) * px + px / 2)  # local v, north first
    uu, vv = np.meshgrid(cols, rows)
    path = tmp_path / "dem.tif"
    with rasterio.open(path, "w", driver="GTiff", width=n, height=n, count=1, dtype="float32", crs="EPSG:4548",
                       transform=from_origin(W.X0 - 100, W.Y0 + 500, px, px), nodata=-9999) as ds:
        ds.write(terrain(uu, vv).astype("float32"), 1)
    report = load_dem(sa_conn.connection.driver_connection, path, step_m=5.0)
    assert report.loaded == report.n_input > 0
    return sa_conn


def _ellipsoidal_terrain(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    x, y = TO_4548.transform(lon, lat)
    return terrain(np.asarray(x) - W.X0, np.asarray(y) - W.Y0) + geoid_undulation(lon, lat)


def test_czml_positions_on_the_terrain(dem_conn) -> None:  # noqa: ANN001
    from gis import analytics as A

    czml = A.patrol_track(dem_conn, "W001", W.DAY, W.DAY + timedelta(hours=2), fmt="czml")
    flat = np.asarray(czml[1]["position"]["cartographicDegrees"], dtype=float).reshape(-1, 4)
    assert len(flat) > 5
    above = flat[:, 3] - _ellipsoidal_terrain(flat[:, 1], flat[:, 2])
    assert above.min() >= 0.0 and above.max() <= 3.0, (above.min(), above.max())
    assert flat[:, 3].min() > 15  # not at 2 m above the ellipsoid any more


def test_live_positions_carry_the_ground_height(dem_conn) -> None:  # noqa: ANN001
    from sqlalchemy import text

    lon, lat = W.lonlat(120, 60)
    dem_conn.execute(text("INSERT INTO gps_fixes (device_id, worker_id, t, geom) VALUES "
                          "('D002', 'W002', :t, ST_SetSRID(ST_MakePoint(:lon, :lat), 4490))"),
                     {"t": W.DAY + timedelta(days=3), "lon": lon, "lat": lat})
    payload = dem_conn.execute(text("SELECT payload FROM stream_messages WHERE type = 'position' "
                                    "ORDER BY id DESC LIMIT 1")).scalar()
    pos = payload["positions"][0] if isinstance(payload, dict) else json.loads(payload)["positions"][0]
    assert pos["worker_id"] == "W002"
    assert abs(pos["h"] - float(_ellipsoidal_terrain(np.array([lon]), np.array([lat]))[0])) < 0.3


# -- cameras ---------------------------------------------------------------------------------------
CAMERAS = [  # id, u, v, mount, heading, hfov, pitch, vfov, range
    ("T1", 100, 10, 6.0, 0.0, 60.0, -5.0, 30.0, 250.0),
    ("T2", 120, 300, 10.0, 90.0, 90.0, -10.0, 20.0, 300.0),
    ("T3", 380, 200, 4.0, 270.0, 120.0, 0.0, None, 300.0),
    ("T4", 200, 200, 30.0, 0.0, 360.0, -45.0, 60.0, 400.0),
]
TARGET_H = 1.5


def _inside(u: np.ndarray, v: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    return (u >= box[0]) & (u <= box[2]) & (v >= box[1]) & (v <= box[3])


def _ray(cam: tuple, tu: float, tv: float) -> tuple[bool, float]:
    """(visible, smallest margin) by an independent numpy computation; the margin (metres or
    degrees) says how close the verdict is to flipping."""
    _, cu, cv, mount, heading, hfov, pitch, vfov, rng = cam
    cz = float(terrain(cu, cv)) + mount
    tz = float(terrain(tu, tv)) + TARGET_H
    d = math.hypot(tu - cu, tv - cv)
    margins = [rng - math.hypot(d, tz - cz)]
    if hfov < 360:
        bearing = math.degrees(math.atan2(tu - cu, tv - cv)) % 360
        margins.append(hfov / 2 - abs((bearing - heading + 540) % 360 - 180))
    vf = vfov if vfov is not None else (180 if hfov >= 180 else
                                        math.degrees(2 * math.atan(math.tan(math.radians(hfov / 2)) * 9 / 16)))
    if vf < 180:
        margins.append(vf / 2 - abs(math.degrees(math.atan2(tz - cz, d)) - pitch))
    f = np.linspace(0, 1, 4001)[1:-1]
    u, v, z = cu + (tu - cu) * f, cv + (tv - cv) * f, cz + (tz - cz) * f
    margins.append(float((z - terrain(u, v)).min()))
    for _, poly, floors, height in W.BUILDINGS:
        box = tuple(np.asarray(poly.bounds) - [W.X0, W.Y0, W.X0, W.Y0])
        if _inside(np.array([cu]), np.array([cv]), box)[0] or _inside(np.array([tu]), np.array([tv]), box)[0]:
            continue
        seg = shapely.LineString([(cu, cv), (tu, tv)])
        footprint = shapely.box(*box)
        if seg.distance(footprint) < 0.5 and seg.intersection(footprint).length < 0.5:
            margins.append(0.0)  # grazes a corner or an edge: too close to call
            continue
        inside = _inside(u, v, box)
        if inside.any():
            centre_u, centre_v = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            top = float(terrain(centre_u, centre_v)) + (height if height is not None else floors * 3.0)
            margins.append(float((z[inside] - top).min()))
    return min(margins) > 0, min(abs(m) for m in margins)


def test_cameras_visible_matches_an_independent_ray_march(dem_conn) -> None:  # noqa: ANN001
    from sqlalchemy import text

    from gis import analytics as A

    dem_conn.execute(text("DELETE FROM cameras"))
    for cid, u, v, mount, heading, hfov, pitch, vfov, rng in CAMERAS:
        lon, lat = W.lonlat(u, v)
        dem_conn.execute(text(
            "INSERT INTO cameras (id, kind, mount_height, heading, pitch, hfov, vfov, range_m, geom) "
            "VALUES (:id, 'street', :m, :hd, :p, :hf, :vf, :r, ST_SetSRID(ST_MakePoint(:lon, :lat), 4490))"),
            {"id": cid, "m": mount, "hd": heading, "p": pitch, "hf": hfov, "vf": vfov, "r": rng,
             "lon": lon, "lat": lat})
    compared = 0
    verdicts: dict[str, set[bool]] = {c[0]: set() for c in CAMERAS}
    for tu in range(5, 400, 30):
        for tv in range(5, 400, 30):
            got = {r["camera_id"] for r in A.cameras_visible(dem_conn, *W.lonlat(tu, tv), h=TARGET_H)}
            for cam in CAMERAS:
                visible, margin = _ray(cam, float(tu), float(tv))
                if margin < 0.5:
                    continue  # too close to call between a 5 m grid and the analytic surface
                compared += 1
                verdicts[cam[0]].add(visible)
                assert (cam[0] in got) == visible, (cam[0], tu, tv, margin)
    assert compared > 400
    assert all(v == {True, False} for v in verdicts.values()), verdicts


def test_the_ridge_and_the_pitch_matter(dem_conn) -> None:  # noqa: ANN001
    """Cases the 2D/level-ground version got wrong: T3 (4 m high, looking west) cannot see past
    the 12 m ridge; T4 (30 m, pitched 45 deg down, 60 deg vfov) cannot see far targets."""
    test_cameras_visible_matches_an_independent_ray_march(dem_conn)
    from gis import analytics as A

    near = {r["camera_id"] for r in A.cameras_visible(dem_conn, *W.lonlat(300, 200), h=TARGET_H)}
    beyond = {r["camera_id"] for r in A.cameras_visible(dem_conn, *W.lonlat(100, 210), h=TARGET_H)}
    assert "T3" in near and "T3" not in beyond
    assert not _ray(CAMERAS[2], 100, 210)[0] and _ray(CAMERAS[2], 300, 200)[0]
    far = {r["camera_id"] for r in A.cameras_visible(dem_conn, *W.lonlat(200, 395), h=TARGET_H)}
    assert "T4" not in far and "T4" in {r["camera_id"] for r in
                                        A.cameras_visible(dem_conn, *W.lonlat(200, 230), h=TARGET_H)}
