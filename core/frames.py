"""Coordinate frames: survey CRS → ellipsoidal lon/lat/h → ECEF → local ENU tile frames.

Survey deliveries carry orthometric heights (1985 National Height Datum). Cesium needs
ellipsoidal heights in ECEF (EPSG:4978). We apply the EGM96 geoid undulation from Debian's
``proj-data`` (``egm96_15.gtx``) explicitly, through a PROJ ``vgridshift`` pipeline, so that a
missing grid is an error and never PROJ's silent "ballpark" (no-op) vertical transform.

    h_ellipsoidal = H_orthometric + N_egm96(lon, lat)

CGCS2000 and WGS84 agree to centimetres at the district scale, so CGCS2000 lon/lat are used
as WGS84 for ECEF.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyproj
from pyproj import CRS, Transformer

GEOID_GRID = "egm96_15.gtx"
_PROJ_DATA_DIRS = ("/usr/share/proj",)


class GeoidGridMissing(RuntimeError):
    """The EGM96 grid is not installed: heights would be wrong by ~-5 m near Bengbu."""


def _ensure_proj_data() -> Path:
    for d in _PROJ_DATA_DIRS:
        grid = Path(d) / GEOID_GRID
        if grid.exists():
            if d not in pyproj.datadir.get_data_dir().split(":"):
                pyproj.datadir.append_data_dir(d)
            return grid
    raise GeoidGridMissing(
        f"geoid grid {GEOID_GRID} not found in {', '.join(_PROJ_DATA_DIRS)}: "
        "install it with `apt-get install proj-data` (make run does this)"
    )


@lru_cache
def _geoid_transformer() -> Transformer:
    grid = _ensure_proj_data()
    # vgridshift with multiplier +1 adds the grid value (N) to the input height.
    pipeline = f"+proj=pipeline +step +proj=unitconvert +xy_in=deg +xy_out=rad " \
               f"+step +proj=vgridshift +grids={grid} +multiplier=1 " \
               f"+step +proj=unitconvert +xy_in=rad +xy_out=deg"
    return Transformer.from_pipeline(pipeline)


def _transform(transformer: Transformer, *coords: np.ndarray) -> tuple[np.ndarray, ...]:
    """``transformer.transform`` on 1-D float arrays, always returning arrays. (pyproj first tries
    its single-point path, which converts 1-element arrays to scalars: deprecated by numpy.)"""
    arrays = [np.atleast_1d(np.asarray(c, dtype=np.float64)).ravel() for c in coords]
    n = len(arrays[0])
    if n == 1:
        arrays = [np.repeat(a, 2) for a in arrays]
    out = transformer.transform(*arrays)
    return tuple(np.asarray(o, dtype=np.float64)[:n] for o in out)


def geoid_undulation(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """EGM96 geoid undulation N (metres) at CGCS2000/WGS84 lon/lat degrees."""
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    _, _, n = _transform(_geoid_transformer(), lon, lat, np.zeros_like(lon))
    n = np.asarray(n, dtype=np.float64)
    if not np.all(np.isfinite(n)):
        raise GeoidGridMissing(f"geoid grid {GEOID_GRID} gave no value for some points")
    return n


# Datums that agree with WGS84 to centimetres here: their own lon/lat is used as WGS84. This is
# also ~300x faster to set up than a CRS → EPSG:4326 transformer (PROJ searches datum shifts:
# 0.8-2.4 s per CRS with proj-data installed).
_WGS84_LIKE_DATUMS = ("World Geodetic System 1984", "China 2000", "China Geodetic Coordinate System 2000")


def lonlat_crs_for(crs: CRS | str | int) -> CRS:
    """The geographic CRS whose lon/lat are used as WGS84 for ``crs`` (its own when WGS84-like)."""
    crs = CRS.from_user_input(crs)
    geod = crs.geodetic_crs
    if geod is not None and geod.datum is not None and geod.datum.name.startswith(_WGS84_LIKE_DATUMS):
        return geod if len(geod.axis_info) == 2 else CRS.from_epsg(4326)
    return CRS.from_epsg(4326)


@lru_cache(maxsize=64)
def _to_lonlat(crs_wkt: str) -> Transformer:
    crs = CRS.from_user_input(crs_wkt)
    return Transformer.from_crs(crs, lonlat_crs_for(crs), always_xy=True)


@lru_cache(maxsize=2)
def _lonlath_to_ecef() -> Transformer:
    return Transformer.from_crs(CRS.from_epsg(4979), CRS.from_epsg(4978), always_xy=True)


@lru_cache(maxsize=2)
def _ecef_to_lonlath() -> Transformer:
    return Transformer.from_crs(CRS.from_epsg(4978), CRS.from_epsg(4979), always_xy=True)


@lru_cache(maxsize=256)
def _wkt_of(crs: str | int) -> str:
    return CRS.from_user_input(crs).to_wkt()


def crs_key(crs: CRS | str | int) -> str:
    """A hashable, cacheable representation of a CRS (WKT; parsing is cached for str/int inputs)."""
    return crs.to_wkt() if isinstance(crs, CRS) else _wkt_of(crs)


def projected_to_lonlat(x: np.ndarray, y: np.ndarray, crs: CRS | str | int) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal transform of any CRS pyproj knows to lon/lat degrees."""
    lon, lat = _transform(_to_lonlat(crs_key(crs)), x, y)
    return np.asarray(lon), np.asarray(lat)


def lonlat_orthometric_to_ecef(lon: np.ndarray, lat: np.ndarray, h_ortho: np.ndarray) -> np.ndarray:
    """(N,3) ECEF metres from lon/lat degrees and orthometric heights."""
    h_ellipsoidal = np.asarray(h_ortho, float) + geoid_undulation(lon, lat)
    return lonlat_ellipsoidal_to_ecef(lon, lat, h_ellipsoidal)


def lonlat_ellipsoidal_to_ecef(lon: np.ndarray, lat: np.ndarray, h_ellipsoidal: np.ndarray) -> np.ndarray:
    x, y, z = _transform(_lonlath_to_ecef(), lon, lat, h_ellipsoidal)
    return np.column_stack([x, y, z])


def ecef_to_lonlat_ellipsoidal(ecef: np.ndarray) -> np.ndarray:
    """(N,3) lon, lat degrees and ellipsoidal height from ECEF."""
    ecef = np.asarray(ecef, float).reshape(-1, 3)
    lon, lat, h = _transform(_ecef_to_lonlath(), ecef[:, 0], ecef[:, 1], ecef[:, 2])
    return np.column_stack([lon, lat, h])


def projected_orthometric_to_ecef(x, y, h_ortho, crs: CRS | str | int) -> np.ndarray:
    lon, lat = projected_to_lonlat(x, y, crs)
    return lonlat_orthometric_to_ecef(lon, lat, h_ortho)


def enu_rotation(lon_deg: float, lat_deg: float) -> np.ndarray:
    """3x3 matrix whose columns are the east, north, up unit vectors in ECEF."""
    lon, lat = np.radians(lon_deg), np.radians(lat_deg)
    east = np.array([-np.sin(lon), np.cos(lon), 0.0])
    north = np.array([-np.sin(lat) * np.cos(lon), -np.sin(lat) * np.sin(lon), np.cos(lat)])
    up = np.array([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])
    return np.column_stack([east, north, up])


@dataclass(frozen=True)
class EnuFrame:
    """A local east-north-up frame anchored at an ECEF origin (a tile's frame)."""

    origin_ecef: tuple[float, float, float]
    lon_deg: float
    lat_deg: float

    @classmethod
    def at_lonlat(cls, lon_deg: float, lat_deg: float, h_ellipsoidal: float = 0.0) -> EnuFrame:
        ecef = lonlat_ellipsoidal_to_ecef(np.array([lon_deg]), np.array([lat_deg]),
                                          np.array([h_ellipsoidal]))[0]
        return cls(tuple(float(v) for v in ecef), float(lon_deg), float(lat_deg))

    @property
    def rotation(self) -> np.ndarray:
        return enu_rotation(self.lon_deg, self.lat_deg)

    def ecef_to_enu(self, ecef: np.ndarray) -> np.ndarray:
        return (np.asarray(ecef, float).reshape(-1, 3) - np.asarray(self.origin_ecef)) @ self.rotation

    def enu_to_ecef(self, enu: np.ndarray) -> np.ndarray:
        return np.asarray(enu, float).reshape(-1, 3) @ self.rotation.T + np.asarray(self.origin_ecef)

    def matrix(self) -> np.ndarray:
        """4x4 ENU→ECEF matrix (row-major numpy)."""
        m = np.eye(4)
        m[:3, :3] = self.rotation
        m[:3, 3] = self.origin_ecef
        return m

    def tileset_transform(self) -> list[float]:
        """The 16 numbers of a 3D Tiles ``transform`` (column-major)."""
        return [float(v) for v in self.matrix().T.reshape(-1)]


# glTF is y-up; 3D Tiles 1.1 glb content is rotated from y-up to z-up by the runtime.
def enu_to_gltf(enu: np.ndarray) -> np.ndarray:
    """ENU (x east, y north, z up) → glTF y-up (x, z, -y)."""
    enu = np.asarray(enu)
    return np.column_stack([enu[:, 0], enu[:, 2], -enu[:, 1]])


def gltf_to_enu(xyz: np.ndarray) -> np.ndarray:
    xyz = np.asarray(xyz)
    return np.column_stack([xyz[:, 0], -xyz[:, 2], xyz[:, 1]])


def local_tm_crs(lon0_deg: float, lat0_deg: float, base: CRS | str | int = 4326) -> CRS:
    """A transverse Mercator CRS (scale 1) centred on a point: a metric working CRS with negligible
    distortion over a district, whatever the input CRS (UTM, Web Mercator, lon/lat). It is built
    on ``base``'s lon/lat CRS so that ``base`` → working needs no datum shift (fast, exact)."""
    from pyproj.crs import ProjectedCRS
    from pyproj.crs.coordinate_operation import TransverseMercatorConversion

    conversion = TransverseMercatorConversion(
        latitude_natural_origin=lat0_deg, longitude_natural_origin=lon0_deg, scale_factor_natural_origin=1.0)
    return ProjectedCRS(conversion=conversion, geodetic_crs=lonlat_crs_for(base), name="onemap local TM")


# WGS84 ellipsoid
_WGS84_A = 6378137.0
_WGS84_E2 = 6.69437999014e-3


def lonlat_ellipsoidal_to_ecef_np(lon: np.ndarray, lat: np.ndarray, h_ellipsoidal: np.ndarray) -> np.ndarray:
    """Closed-form geodetic → ECEF on WGS84 (numpy; identical to PROJ to < 1 µm)."""
    lam, phi = np.radians(lon), np.radians(lat)
    sin_phi, cos_phi = np.sin(phi), np.cos(phi)
    n = _WGS84_A / np.sqrt(1.0 - _WGS84_E2 * sin_phi * sin_phi)
    h = np.asarray(h_ellipsoidal, float)
    return np.column_stack([(n + h) * cos_phi * np.cos(lam), (n + h) * cos_phi * np.sin(lam),
                            (n * (1.0 - _WGS84_E2) + h) * sin_phi])


def projected_orthometric_to_enu(frame: EnuFrame, crs: CRS | str | int, geoid_cell_m: float = 0.0):
    """A function (x, y, H_orthometric) in ``crs`` → (N,3) ENU coordinates of ``frame``.

    ``geoid_cell_m`` > 0 evaluates N once per grid cell of that size (in ``crs`` units) instead of
    per point: EGM96 changes by a few cm per km, so 50 m cells are off by < 2 mm and save a full
    PROJ pass over every vertex.
    """
    key = crs_key(crs)

    def to_enu(x: np.ndarray, y: np.ndarray, h_ortho: np.ndarray) -> np.ndarray:
        lon, lat = projected_to_lonlat(x, y, key)
        if geoid_cell_m > 0 and len(lon) > 16:
            qx = np.round(np.asarray(x, float) / geoid_cell_m).astype(np.int64)
            qy = np.round(np.asarray(y, float) / geoid_cell_m).astype(np.int64)
            cells, first, inverse = np.unique(qx * 4_000_003 + qy, return_index=True, return_inverse=True)
            n = geoid_undulation(lon[first], lat[first])[inverse.reshape(-1)]
        else:
            n = geoid_undulation(lon, lat)
        ecef = lonlat_ellipsoidal_to_ecef_np(lon, lat, np.asarray(h_ortho, float) + n)
        return frame.ecef_to_enu(ecef)

    return to_enu
