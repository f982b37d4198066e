"""LAS/LAZ point cloud → 3D Tiles (pnts) through py3dtiles' converter, with ellipsoidal heights.

py3dtiles transforms the horizontal CRS to ECEF (EPSG:4978) but treats z as an ellipsoidal
height: it cannot apply a geoid (and PROJ silently does nothing for the 1985 height datum).
Survey point clouds carry ORTHOMETRIC z, so before converting we write a temporary LAS whose
z is ``z + N`` (EGM96 undulation at each point, ≈ -3 m near Bengbu), keeping every other
attribute and the header (CRS, scales, offsets). The horizontal CRS comes from the LAS header
(WKT / GeoTIFF keys; a compound CRS keeps its horizontal part), or ``src_crs`` when the header
has none (``src_crs`` also overrides a header CRS, with a warning).

Output: py3dtiles' default pnts tiles (``OUT/tileset.json`` + ``OUT/points/*.pnts``), which pass
the validators; its ``--spec-version 1.1`` glb output does not (see shared NOTES).
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import laspy
import numpy as np
from pyproj import CRS

from core.errors import InputError
from core.frames import active_geoid, geoid_undulation, projected_to_lonlat
from pipelines.dem import bilinear
from pipelines.progress import Progress
from pipelines.progress import report as say
from pipelines.publish import staged

log = logging.getLogger(__name__)

CHUNK_POINTS = 2_000_000
GEOID_LATTICE_M = 100.0  # the geoid is smooth: sample N every 100 m and interpolate


class PointCloudError(InputError, ValueError):
    """The LAS file cannot be converted (no CRS, empty, unreadable)."""


@dataclass
class PointCloudBuild:
    """What :func:`build_pointcloud` wrote."""

    out_dir: Path
    points: int
    crs_in: str
    geoid_range: tuple[float, float]
    tiles: int
    seconds: float

    def summary(self) -> str:
        return (f"pointcloud: {self.points} points ({self.crs_in}, geoid N {self.geoid_range[0]:.2f}.."
                f"{self.geoid_range[1]:.2f} m added), {self.tiles} pnts tiles, {self.seconds:.1f} s "
                f"-> {self.out_dir / 'tileset.json'}")


def las_crs(path: str | Path) -> CRS | None:
    """The horizontal CRS declared in a LAS/LAZ header, or None."""
    with laspy.open(path) as reader:
        try:
            crs = reader.header.parse_crs()
        except Exception as exc:  # laspy raises various errors on malformed VLRs
            log.warning("%s: unreadable CRS in the LAS header (%s)", path, exc)
            return None
    if crs is None:
        return None
    return horizontal_crs(crs)


def horizontal_crs(crs: CRS) -> CRS:
    """The horizontal part of a compound CRS (the CRS itself otherwise)."""
    if crs.is_compound:
        for sub in crs.sub_crs_list:
            if not sub.is_vertical:
                return sub
    return crs


def resolve_crs(path: str | Path, src_crs: CRS | str | int | None) -> CRS:
    header = las_crs(path)
    if src_crs is not None:
        user = horizontal_crs(CRS.from_user_input(src_crs))
        if header is not None and header != user:
            log.warning("%s: header CRS %s overridden by %s", path, header.to_string(), user.to_string())
        return user
    if header is None:
        raise PointCloudError(f"{path}: the LAS header declares no CRS; pass the source CRS "
                              "(--src-crs, e.g. 4548)")
    return header


class _ProjectedGeoid:
    """EGM96 N on a regular lattice in the point cloud's own CRS (bilinear between nodes)."""

    def __init__(self, crs: CRS, mins: np.ndarray, maxs: np.ndarray) -> None:
        step = GEOID_LATTICE_M if crs.is_projected else GEOID_LATTICE_M / 111_320.0
        self.x0, self.y0, self.step = float(mins[0]) - step, float(mins[1]) - step, step
        ncol = int(math.ceil((maxs[0] - self.x0) / step)) + 2
        nrow = int(math.ceil((maxs[1] - self.y0) / step)) + 2
        xx, yy = np.meshgrid(self.x0 + np.arange(ncol) * step, self.y0 + np.arange(nrow) * step)
        lon, lat = projected_to_lonlat(xx.ravel(), yy.ravel(), crs)
        self.values = geoid_undulation(lon, lat).reshape(nrow, ncol)

    def __call__(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return bilinear(self.values, (x - self.x0) / self.step, (y - self.y0) / self.step)


def write_ellipsoidal_las(src: str | Path, dst: str | Path, crs: CRS) -> tuple[int, float, float]:
    """Copy ``src`` to ``dst`` with z + N (EGM96); returns (points, N min, N max)."""
    n_min, n_max, total = math.inf, -math.inf, 0
    with laspy.open(src) as reader:
        header = reader.header
        if header.point_count == 0:
            raise PointCloudError(f"{src}: the LAS file has no points")
        geoid = _ProjectedGeoid(crs, np.asarray(header.mins), np.asarray(header.maxs))
        with laspy.open(dst, mode="w", header=header) as writer:
            for chunk in reader.chunk_iterator(CHUNK_POINTS):
                x, y = np.asarray(chunk.x), np.asarray(chunk.y)
                n = geoid(x, y)
                if not np.all(np.isfinite(n)):
                    raise PointCloudError(f"{src}: geoid undefined for some points (bad coordinates?)")
                chunk.z = np.asarray(chunk.z) + n
                writer.write_points(chunk)
                n_min, n_max = min(n_min, float(n.min())), max(n_max, float(n.max()))
                total += len(x)
    if total != header.point_count:  # laspy only logs a truncated file: never convert half of it
        raise PointCloudError(f"{src}: the LAS header promises {header.point_count} points but the file "
                              f"holds {total} (truncated?); deliver the complete file")
    return total, n_min, n_max


@dataclass
class PointCloudOptions:
    """Options of :func:`build_pointcloud` (``onemap tiles pointcloud``)."""

    src_crs: CRS | str | int | None = None  # horizontal CRS when the LAS header declares none
    jobs: int = 2  # py3dtiles worker processes


def build_pointcloud(src: str | Path, out: str | Path, options: PointCloudOptions | None = None,
                     progress: Progress | None = None) -> PointCloudBuild:
    """Convert an orthometric LAS/LAZ to a pnts 3D Tiles tileset (ECEF, ellipsoidal) in
    ``OUT.tmp-<pid>`` and publish it atomically as ``out`` once validated."""
    from py3dtiles.convert import convert

    o = options or PointCloudOptions()
    t0 = time.perf_counter()
    las_path, out = Path(src), Path(out)
    if not las_path.exists():
        raise PointCloudError(f"{las_path}: no such file")
    crs = resolve_crs(las_path, o.src_crs)
    say(progress, "points", 0, 2)
    with staged(out) as staging, tempfile.TemporaryDirectory(prefix="onemap-pc-") as tmp:
        shifted = Path(tmp) / f"{las_path.stem}_ellipsoidal{las_path.suffix.lower()}"
        points, n_min, n_max = write_ellipsoidal_las(las_path, shifted, crs)
        log.info("pointcloud: %d points, z + N (%.2f..%.2f m) -> %s", points, n_min, n_max, shifted)
        say(progress, "points", 1, 2)
        convert(
            [shifted], outfolder=staging.tmp, overwrite=True, crs_in=crs, force_crs_in=True,
            crs_out=CRS.from_epsg(4978), pyproj_always_xy=True, jobs=max(1, o.jobs),
            use_process_pool=o.jobs > 1, rgb=True,
        )
        tileset_path = staging.tmp / "tileset.json"
        if not tileset_path.exists():
            raise PointCloudError(f"py3dtiles wrote no tileset.json for {las_path}")
        doc = json.loads(tileset_path.read_text(encoding="utf-8"))  # record the geoid the run used
        doc.setdefault("extras", {})["heights"] = active_geoid().metadata()
        tileset_path.write_text(json.dumps(doc, separators=(",", ":")), encoding="utf-8")
        tiles = sum(1 for _ in staging.tmp.rglob("*.pnts"))
    say(progress, "points", 2, 2)
    name = f"EPSG:{crs.to_epsg()}" if crs.to_epsg() else crs.name
    build = PointCloudBuild(out, points, name, (n_min, n_max), tiles, time.perf_counter() - t0)
    log.info(build.summary())
    return build
