"""`onemap tiles build`: every layer of a sample-style delivery into one tiles folder + catalog.

    OUT/buildings/tileset.json   OUT/roads/tileset.json   OUT/vegetation/tileset.json
    OUT/furniture/tileset.json   OUT/pointcloud/tileset.json   OUT/terrain/layer.json
    OUT/imagery/ (TMS, imagery.json)   OUT/mesh/tileset.json (reality mesh)
    OUT/index.json               the catalog served at /tilesets

Each layer pipeline publishes its own folder atomically, so a failed layer leaves the previous
version of that layer in place; the catalog is written last, atomically, and only lists layers
whose tileset exists.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from core.frames import ecef_to_lonlat_ellipsoidal
from pipelines.progress import Progress

log = logging.getLogger(__name__)

LAYERS = ("buildings", "roads", "vegetation", "furniture", "pointcloud", "terrain", "imagery", "mesh")
KINDS = {"terrain": "terrain", "imagery": "imagery"}  # catalog kind; every other layer is "3dtiles"
#: layers built only when the delivery has their source (not an error when it does not)
OPTIONAL_SOURCES = {"imagery": "ortho.tif", "mesh": "mesh/metadata.xml"}


@dataclass
class LayerOutcome:
    name: str
    ok: bool
    seconds: float
    features: int = 0
    rejected: int = 0
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and ".build" not in p.parts)


def _mat(transform: list[float] | None) -> np.ndarray:
    return np.eye(4) if transform is None else np.asarray(transform, float).reshape(4, 4).T


def tileset_region(tileset_json: Path) -> list[float] | None:
    """Bounding region [west, south, east, north, hmin, hmax] (radians, metres) of a tileset's root."""
    doc = orjson.loads(tileset_json.read_bytes())
    root = doc["root"]
    bv = root["boundingVolume"]
    if "region" in bv:
        return [float(v) for v in bv["region"]]
    m = _mat(root.get("transform"))
    if "box" in bv:
        b = np.asarray(bv["box"], float)
        c, axes = b[:3], b[3:].reshape(3, 3)
        signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], float)
        pts = c + signs @ axes
    elif "sphere" in bv:
        c, r = np.asarray(bv["sphere"][:3], float), float(bv["sphere"][3])
        pts = c + r * np.vstack([np.eye(3), -np.eye(3)])
    else:
        return None
    ecef = (np.c_[pts, np.ones(len(pts))] @ m.T)[:, :3]
    llh = ecef_to_lonlat_ellipsoidal(ecef)
    lon, lat = np.radians(llh[:, 0]), np.radians(llh[:, 1])
    return [float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max()),
            float(llh[:, 2].min()), float(llh[:, 2].max())]


def terrain_region(layer_json: Path) -> list[float] | None:
    doc = orjson.loads(layer_json.read_bytes())
    b = doc.get("bounds")
    if not b:
        return None
    w, s, e, n = (float(np.radians(v)) for v in b[:4])
    return [w, s, e, n, 0.0, 0.0]


def _counts(report: Any) -> tuple[int, int]:
    c = report.counts
    return int(c.get("written", 0)), int(c.get("rejected", 0))


def build_district(sample_dir: Path, out: Path, *, layers: tuple[str, ...] = LAYERS,
                   progress: Progress | None = None, dask: str | None = None,
                   partition_level: int | None = None, mesh_compress: str = "none") -> dict[str, Any]:
    """Build every layer of ``sample_dir`` (the ``clean/`` folder of a delivery, or a folder that
    holds ``clean/``) into ``out`` and write ``out/index.json``; returns the catalog. ``dask`` and
    ``partition_level``: the spatial partitions of the buildings, roads, trees and furniture (docs/scale.md);
    ``mesh_compress``: none or draco for the reality-mesh tiles."""
    src = sample_dir / "clean" if (sample_dir / "clean").is_dir() else sample_dir
    required = {"buildings.gpkg", "roads.gpkg", "trees.gpkg", "furniture.gpkg", "dem.tif"}
    missing = sorted(f for f in required if not (src / f).exists())
    if missing:
        raise FileNotFoundError(
            f"{src} is not a sample delivery: missing {', '.join(missing)}; "
            "generate one with `onemap sample generate --out DIR`"
        )
    out.mkdir(parents=True, exist_ok=True)
    dem = src / "dem.tif"
    boundary = src / "boundary.gpkg" if (src / "boundary.gpkg").exists() else None
    water = src / "water.gpkg" if (src / "water.gpkg").exists() else None
    green = src / "green.gpkg" if (src / "green.gpkg").exists() else None
    outcomes: list[LayerOutcome] = []
    t_all = time.perf_counter()

    def step(name: str, fn: Callable[[], LayerOutcome]) -> None:
        if name not in layers or (name in OPTIONAL_SOURCES and not (src / OPTIONAL_SOURCES[name]).exists()):
            return  # imagery and reality mesh are built when the delivery has them
        if progress:
            progress("layers", len(outcomes), len(layers))
        t0 = time.perf_counter()
        log.info("building %s", name)
        try:
            outcome = fn()
        except Exception as exc:  # noqa: BLE001 - one failed layer must not lose the others
            log.exception("layer %s failed", name)
            outcome = LayerOutcome(name, False, 0.0, error=f"{type(exc).__name__}: {exc}")
        outcome.seconds = round(time.perf_counter() - t0, 2)
        outcomes.append(outcome)

    def buildings() -> LayerOutcome:
        from pipelines.buildings import BuildingOptions, build_buildings

        res = build_buildings(src / "buildings.gpkg", out / "buildings",
                              BuildingOptions(dem=dem, boundary=boundary, dask=dask,
                                              partition_level=partition_level), progress)
        w, r = _counts(res.report)
        return LayerOutcome("buildings", True, 0, w, r, details={"tiles": res.tiles})

    def roads() -> LayerOutcome:
        from pipelines.roads import RoadOptions, build_roads

        res = build_roads(src / "roads.gpkg", out / "roads", RoadOptions(dem=dem, boundary=boundary, dask=dask,
                                                                              partition_level=partition_level),
                          progress)
        w, r = _counts(res.report)
        return LayerOutcome("roads", True, 0, w, r)

    def vegetation() -> LayerOutcome:
        from pipelines.vegetation import VegetationOptions, build_vegetation

        res = build_vegetation(src / "trees.gpkg", out / "vegetation",
                               VegetationOptions(dem=dem, green=green, water=water, boundary=boundary, dask=dask,
                                                 partition_level=partition_level), progress)
        w = sum(_counts(r)[0] for r in res.reports)
        rj = sum(_counts(r)[1] for r in res.reports)
        return LayerOutcome("vegetation", True, 0, w, rj,
                            details={r.layer: r.counts.get("written", 0) for r in res.reports})

    def furniture() -> LayerOutcome:
        from pipelines.furniture import FurnitureOptions, build_furniture

        res = build_furniture(src / "furniture.gpkg", out / "furniture",
                              FurnitureOptions(dem=dem, boundary=boundary, dask=dask,
                                                partition_level=partition_level), progress)
        w, r = _counts(res.report)
        return LayerOutcome("furniture", True, 0, w, r)

    def pointcloud() -> LayerOutcome:
        from pipelines.pointcloud import PointCloudOptions, build_pointcloud

        las = src / "pointcloud.las"
        if not las.exists():
            return LayerOutcome("pointcloud", False, 0, error=f"{las} not found")
        res = build_pointcloud(las, out / "pointcloud",
                               PointCloudOptions(jobs=max(1, min(2, os.cpu_count() or 1))), progress)
        return LayerOutcome("pointcloud", True, 0, res.points, details={"tiles": res.tiles})

    def terrain() -> LayerOutcome:
        from pipelines.terrain import TerrainOptions, build_terrain

        res = build_terrain(dem, out / "terrain", TerrainOptions(water=water), progress)
        return LayerOutcome("terrain", True, 0, res.tiles, details={"max_level": res.max_level})

    def imagery() -> LayerOutcome:
        from pipelines.imagery import build_imagery

        res = build_imagery(src / "ortho.tif", out / "imagery", None, progress)
        return LayerOutcome("imagery", True, 0, res.info.tiles,
                            details={"minzoom": res.info.minzoom, "maxzoom": res.info.maxzoom,
                                     "scheme": res.info.scheme, "format": res.info.fmt})

    def mesh() -> LayerOutcome:
        from pipelines.mesh import MeshOptions, build_mesh

        res = build_mesh(src / "mesh", out / "mesh", MeshOptions(compress=mesh_compress), progress)
        return LayerOutcome("mesh", True, 0, res.triangles_in,
                            details={"tiles": res.tiles, "tiles_reused": res.tiles_reused, "compress": res.compress,
                                     "triangles_per_level": {str(k): v for k, v in res.triangles_out.items()}})

    for name, fn in (("terrain", terrain), ("buildings", buildings), ("roads", roads),
                     ("vegetation", vegetation), ("furniture", furniture), ("pointcloud", pointcloud),
                     ("imagery", imagery), ("mesh", mesh)):
        step(name, fn)
    if progress:
        progress("layers", len(outcomes), len(layers))

    catalog = write_catalog(out, src, outcomes, seconds=time.perf_counter() - t_all)
    return catalog


def write_catalog(out: Path, src: Path, outcomes: list[LayerOutcome], seconds: float) -> dict[str, Any]:
    """Write ``out/index.json`` atomically, listing every layer present on disk."""
    by_name = {o.name: o for o in outcomes}
    previous: dict[str, Any] = {}
    if (out / "index.json").exists():
        old = orjson.loads((out / "index.json").read_bytes())
        previous = {entry["name"]: entry for entry in old.get("layers", [])}
    entries: list[dict[str, Any]] = []
    for name in LAYERS:
        outcome = by_name.get(name)
        if name == "terrain":
            entry_file, url = out / "terrain" / "layer.json", "/terrain"
        elif name == "imagery":
            entry_file, url = out / "imagery" / "imagery.json", "/imagery/"
        else:
            entry_file, url = out / name / "tileset.json", f"/tiles/{name}/tileset.json"
        if not entry_file.exists():
            continue
        if outcome is None or not outcome.ok:
            entry = dict(previous.get(name, {"name": name, "url": url}))
            entry["stale"] = True
            if outcome is not None:
                entry["error"] = outcome.error
        else:
            entry = {"name": name, "url": url, "kind": KINDS.get(name, "3dtiles"),
                     "features": outcome.features, "rejected": outcome.rejected,
                     "build_seconds": outcome.seconds, **outcome.details}
        entry["bytes"] = folder_bytes(entry_file.parent)
        entry["region"] = (terrain_region(entry_file) if name in ("terrain", "imagery")
                           else tileset_region(entry_file))
        entries.append(entry)
    sources = {p.name: file_sha256(p) for p in sorted(src.iterdir()) if p.is_file()}
    catalog = {
        "name": "解放街道 Jiefang Street, Longzihu District, Bengbu",
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build_seconds": round(seconds, 2),
        "source": str(src),
        "source_checksums": sources,
        "layers": entries,
        "terrain": {"url": "/terrain"} if (out / "terrain" / "layer.json").exists() else None,
        "failed": [{"name": o.name, "error": o.error} for o in outcomes if not o.ok],
    }
    tmp = out / f".index.json.tmp-{os.getpid()}"
    tmp.write_bytes(orjson.dumps(catalog, option=orjson.OPT_INDENT_2))
    os.replace(tmp, out / "index.json")
    return catalog
