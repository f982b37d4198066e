"""Coordinate frames: delivery CRS → ellipsoidal lon/lat/h → ECEF → local ENU tile frames.

Any input CRS goes straight to ECEF: source x/y → lon/lat of the source's own datum (WGS84-like
datums used as WGS84) → +geoid → ECEF. Metric work (areas, buffers, draping grids) happens in a
**working CRS chosen from the data** (:func:`working_crs_for`): the delivery's own projected CRS
when it is conformal and nearly true to scale where the data lies (EPSG:4548 near Bengbu, UTM,
RD New, ...), else a transverse Mercator centred on the data (lon/lat, Web Mercator, a
projection used far from its zone). The district's EPSG:4548 is only the default for files that
declare no CRS, never an intermediate.

Heights: deliveries carry orthometric heights; Cesium needs ellipsoidal heights. The geoid model
is chosen per run (``--geoid``, :func:`resolve_geoid`, :func:`using_geoid`):

* ``egm96`` (default): Debian ``proj-data``'s ``egm96_15.gtx``;
* a PATH to a GTX/GeoTIFF grid (e.g. a national quasi-geoid model) of N in metres;
* ``none``: heights are already ellipsoidal (N = 0).

The grid is applied explicitly through a PROJ ``vgridshift`` pipeline, so a missing grid is an
error and never PROJ's silent "ballpark" (no-op) vertical transform::

    h_ellipsoidal = H_orthometric + N(lon, lat)
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyproj
from pyproj import CRS, Transformer

from core.errors import ConfigError, InputError

GEOID_GRID = "egm96_15.gtx"
_PROJ_DATA_DIRS = ("/usr/share/proj",)


class GeoidGridMissing(ConfigError):
    """The geoid grid is not installed or not readable: heights would be wrong by metres."""


class OutsideGeoidError(InputError):
    """Points lie outside the geoid grid's extent."""


def _ensure_proj_data() -> Path:
    for d in _PROJ_DATA_DIRS:
        grid = Path(d) / GEOID_GRID
        if grid.exists():
            if d not in pyproj.datadir.get_data_dir().split(":"):
                pyproj.datadir.append_data_dir(d)
            return grid
    raise GeoidGridMissing(
        f"geoid grid {GEOID_GRID} not found in {', '.join(_PROJ_DATA_DIRS)}",
        hint="install it with `apt-get install proj-data` (make run does this), or pass --geoid PATH")


@lru_cache(maxsize=8)
def _geoid_transformer(grid: str | None = None) -> Transformer:
    grid = grid or str(_ensure_proj_data())
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


# ------------------------------------------------------------------------------------ geoid models
@dataclass(frozen=True)
class Geoid:
    """A geoid model: ``name`` is ``egm96``, ``none`` or the grid's file name; ``grid`` its path."""

    name: str
    grid: Path | None

    @property
    def is_none(self) -> bool:
        return self.grid is None

    def undulation(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """N (metres) at lon/lat degrees (zeros for ``none``)."""
        lon = np.atleast_1d(np.asarray(lon, dtype=np.float64))
        lat = np.atleast_1d(np.asarray(lat, dtype=np.float64))
        if self.grid is None:
            return np.zeros(np.broadcast(lon, lat).shape)
        if self.name == "egm96":
            _ensure_proj_data()
        _, _, n = _transform(_geoid_transformer(str(self.grid)), lon, lat, np.zeros_like(lon))
        n = np.asarray(n, dtype=np.float64)
        bad = ~np.isfinite(n) | (np.abs(n) > 1000)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise OutsideGeoidError(
                f"geoid grid {self.grid} has no value at lon {lon.ravel()[i]:.6f}, lat {lat.ravel()[i]:.6f} "
                f"({int(bad.sum())} point(s))", hint="use a grid covering the data, or --geoid egm96")
        return n

    def metadata(self) -> dict[str, Any]:
        """What a tileset / report records about the heights."""
        if self.grid is None:
            return {"geoid": "none", "heights": "ellipsoidal as delivered (no geoid applied)"}
        return {"geoid": self.name, "geoid_grid": self.grid.name,
                "heights": "orthometric + geoid undulation N = ellipsoidal (WGS84)"}


def resolve_geoid(spec: str | Path | Geoid | None) -> Geoid:
    """``egm96`` (default, also ``None``), ``none``, or a PATH to a GTX/GeoTIFF grid of N in metres.

    A missing or unreadable PATH is a :class:`~core.errors.ConfigError`."""
    if isinstance(spec, Geoid):
        return spec
    text = str(spec).strip() if spec is not None else "egm96"
    if text.lower() in ("egm96", "egm96_15", ""):
        return Geoid("egm96", _ensure_proj_data())
    if text.lower() in ("none", "ellipsoidal"):
        return Geoid("none", None)
    path = Path(text).expanduser()
    if not path.is_file():
        raise ConfigError(f"geoid grid {path} not found",
                          hint="--geoid takes egm96, none or the path of a GTX/GeoTIFF geoid grid")
    try:
        import rasterio

        with rasterio.open(path) as ds:
            if ds.count < 1 or ds.width < 2 or ds.height < 2:
                raise ConfigError(f"geoid grid {path} has no usable band ({ds.count} band(s), "
                                  f"{ds.width}x{ds.height} cells)")
            west, south, east, north = ds.bounds
    except ConfigError:
        raise
    except Exception as exc:  # rasterio.errors.RasterioIOError and friends
        raise ConfigError(f"geoid grid {path} cannot be read as a GTX/GeoTIFF grid: {exc}",
                          hint="pass a GTX or GeoTIFF grid of geoid undulations in metres") from exc
    geoid = Geoid(path.name, path.resolve())
    try:  # PROJ must be able to use it too
        geoid.undulation(np.array([(west + east) / 2]), np.array([(south + north) / 2]))
    except OutsideGeoidError:
        pass
    except Exception as exc:
        raise ConfigError(f"geoid grid {path} cannot be used by PROJ vgridshift: {exc}") from exc
    return geoid


_ACTIVE_GEOID: contextvars.ContextVar[Geoid | None] = contextvars.ContextVar("onemap_geoid", default=None)


def active_geoid() -> Geoid:
    """The geoid of the current run (:func:`using_geoid`), EGM96 by default."""
    g = _ACTIVE_GEOID.get()
    return g if g is not None else resolve_geoid("egm96")


@contextmanager
def using_geoid(spec: str | Path | Geoid | None) -> Iterator[Geoid]:
    """Every height conversion inside the block uses this geoid (``--geoid`` of a command)."""
    geoid = resolve_geoid(spec)
    token = _ACTIVE_GEOID.set(geoid)
    try:
        yield geoid
    finally:
        _ACTIVE_GEOID.reset(token)


def geoid_undulation(lon: np.ndarray, lat: np.ndarray, geoid: Geoid | None = None) -> np.ndarray:
    """Geoid undulation N (metres) at WGS84-like lon/lat degrees, of ``geoid`` or the active one."""
    return (geoid or active_geoid()).undulation(lon, lat)


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


# ------------------------------------------------------------------------------------ working CRS
DEFAULT_DELIVERY_CRS = "EPSG:4548"  # only for files that declare no CRS (the district's deliveries)
MAX_SCALE_ERROR = 1e-3  # a delivery CRS is kept as the working CRS if true to scale within 0.1 %


def _scale_error(crs: CRS, lon: float, lat: float) -> float:
    """|k - 1| of a projected CRS at a point (areal and meridional scale), inf when not conformal."""
    try:
        f = pyproj.Proj(crs).get_factors(lon, lat, errcheck=True)
    except Exception:
        return float("inf")
    # angular distortion (degrees) is ~1e-6 of numerical noise for a conformal projection
    if not np.isfinite(f.meridional_scale) or abs(f.angular_distortion) > 1e-3:
        return float("inf")
    return float(max(abs(f.meridional_scale - 1.0), abs(f.parallel_scale - 1.0)))


def working_crs_for(bounds: tuple[float, float, float, float] | np.ndarray, crs: CRS | str | int,
                    max_scale_error: float = MAX_SCALE_ERROR) -> CRS:
    """The metric working CRS of data with ``bounds`` (minx, miny, maxx, maxy) in ``crs``.

    ``crs`` itself when it is a conformal projection in metres true to scale within
    ``max_scale_error`` at the data's centre (no reprojection at all: exact); otherwise a
    transverse Mercator centred on the data, on ``crs``'s own datum (centre snapped to 0.01° so
    reruns share the frame). Never a CRS of another place."""
    crs = CRS.from_user_input(crs)
    b = np.asarray(bounds, float).reshape(4)
    if not np.all(np.isfinite(b)):
        raise InputError(f"data bounds {b.tolist()} are not finite: cannot choose a working frame")
    cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
    lon, lat = projected_to_lonlat(np.array([cx]), np.array([cy]), crs)
    lon0, lat0 = float(lon[0]), float(lat[0])
    if not (np.isfinite(lon0) and np.isfinite(lat0)):
        raise InputError(f"data centre ({cx}, {cy}) is outside the domain of {crs.name}")
    if crs.is_projected and all(a.unit_name in ("metre", "meter") for a in crs.axis_info[:2]):
        if _scale_error(crs, lon0, lat0) <= max_scale_error:
            return crs
    return local_tm_crs(round(lon0, 2), round(lat0, 2), crs)


_ACTIVE_WORKING_CRS: contextvars.ContextVar[CRS | None] = contextvars.ContextVar("onemap_working_crs",
                                                                                  default=None)


def active_working_crs() -> CRS:
    """The working CRS of the current run (:func:`using_working_crs`), else the delivery default."""
    crs = _ACTIVE_WORKING_CRS.get()
    return crs if crs is not None else CRS.from_user_input(DEFAULT_DELIVERY_CRS)


@contextmanager
def using_working_crs(crs: CRS | str | int) -> Iterator[CRS]:
    """Metric work inside the block (draping, DEM sampling, ENU) uses this working CRS."""
    crs = CRS.from_user_input(crs)
    token = _ACTIVE_WORKING_CRS.set(crs)
    try:
        yield crs
    finally:
        _ACTIVE_WORKING_CRS.reset(token)


def transform_xy(x: np.ndarray, y: np.ndarray, src: CRS | str | int, dst: CRS | str | int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal transform between two CRSs (identity when equal)."""
    ks, kd = crs_key(src), crs_key(dst)
    if ks == kd:
        return np.asarray(x, float), np.asarray(y, float)
    return _transform(_between(ks, kd), x, y)


@lru_cache(maxsize=64)
def _between(src_wkt: str, dst_wkt: str) -> Transformer:
    return Transformer.from_crs(CRS.from_user_input(src_wkt), CRS.from_user_input(dst_wkt), always_xy=True)
