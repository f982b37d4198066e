"""Deterministic sample-district generator: ``generate(out_dir, seed, scale)`` writes the survey
delivery of Jiefang Street described in docs/sample-delivery.md (clean/ and dirty/).

One district is generated; ``scale=K`` lays K x K translated copies side by side (each copy's DEM
abuts the next, ids of copy i>0 get ``-kI``), so the survey layers grow with K² while memory stays
that of one copy (layers are written copy by copy, see :mod:`data.generator.stream`). Overlays
(people, events, GPS, cameras, workers) stay one district's worth unless ``scale_overlays``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely
from pyproj import Transformer

from . import (
    buildings,
    civil,
    dirty,
    facilities,
    furniture,
    layout,
    mesh,
    ortho,
    overlays,
    roads,
    stream,
    terrain,
    vegetation,
    writers,
)
from .common import CRS_4490, CRS_4548, DEM_RES_M, District, rng_for, suffix_ids

log = logging.getLogger(__name__)

# id-like columns per layer (suffixed in copies)
ID_COLS = {
    "boundary": [],
    "communities": ["id"],
    "grid_cells": ["id", "community_id", "staff_id"],
    "buildings": ["id", "community"],
    "roads": ["id"],
    "trees": ["id"],
    "green": ["id"],
    "water": ["id"],
    "furniture": ["id", "road_id"],
    "facilities": ["id", "community", "building_id"],
    "cameras": ["id"],
    "checkpoints": ["id", "grid_id"],
    "geofences": ["id", "worker_id"],
    "workers": ["id", "device_id", "grid_id"],
    "population": ["person_id", "building_id"],
    "events": ["id", "worker_id"],
    "surveys": ["community_id"],
    "care_households": ["id", "building_id", "worker_id"],
    "care_visits": ["household_id", "worker_id"],
}
VECTOR_LAYERS = [
    "boundary",
    "communities",
    "grid_cells",
    "buildings",
    "roads",
    "trees",
    "green",
    "water",
    "furniture",
    "facilities",
    "cameras",
    "checkpoints",
    "geofences",
]
CSV_LAYERS = ["workers", "population", "events", "surveys", "care_households", "care_visits"]


# --layers: what a name writes (boundary.gpkg is always written: every pipeline wants it)
LAYERS = {
    "admin": ["communities", "grid_cells"],
    "buildings": ["buildings"],
    "roads": ["roads"],
    "trees": ["trees"],
    "landcover": ["green", "water"],
    "furniture": ["furniture"],
    "facilities": ["facilities"],
    "dem": [],
    "pointcloud": [],
    "ortho": [],
    "mesh": [],
    "overlays": ["cameras", "checkpoints", "geofences", "workers", "population", "events", "surveys",
                 "care_households", "care_visits"],
    "dirty": [],
}
OVERLAY_FRAMES = set(LAYERS["overlays"])


def parse_layers(spec: str | None) -> list[str]:
    """``"buildings,roads"`` -> checked layer names in the fixed order; None/"all" -> every layer."""
    if spec is None or spec.strip() in ("", "all"):
        return list(LAYERS)
    names = [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in LAYERS]
    if unknown:
        raise ValueError(f"unknown layer(s) {', '.join(unknown)}; choose from {', '.join(LAYERS)} or all")
    return [n for n in LAYERS if n in names]


def build_district(seed: int, layers: list[str] | None = None) -> District:
    """Generate one district copy in memory (all modules, fixed order). Steps nothing selected
    needs (the point cloud, the overlays and their GPS) are skipped; every module draws from its
    own random stream, so skipping never changes the others."""
    layers = list(LAYERS) if layers is None else layers
    d = District(seed)
    skip = set()
    if "pointcloud" not in layers:
        skip.add("pointcloud")
    if "overlays" not in layers:
        skip |= {"overlays", "civil"}
    steps = [
        ("layout", layout.build),
        ("roads", roads.build),
        ("buildings", buildings.build),
        ("vegetation", vegetation.build),
        ("furniture", furniture.build),
        ("facilities", facilities.build),
        ("terrain", terrain.build_dem),
        ("pointcloud", terrain.build_pointcloud),
        ("overlays", overlays.build),
        ("civil", civil.build),  # after the overlays: trends the events, adds surveys and care visits
    ]
    for name, fn in steps:
        if name in skip:
            continue
        t, c = time.perf_counter(), time.process_time()
        fn(rng_for(seed, name), d)
        log.info("generator: %s %.1f s (cpu %.1f s)", name, time.perf_counter() - t, time.process_time() - c)
    boundary = gpd.GeoDataFrame(
        {"name": ["解放街道"], "name_en": ["Jiefang Street"], "area_m2": [round(d.boundary.area, 1)]},
        geometry=[d.boundary],
        crs=CRS_4548,
    )
    d.extras["frames"] = {
        "boundary": boundary,
        "communities": d.communities,
        "grid_cells": d.grid_cells,
        "buildings": d.buildings,
        "roads": d.roads.drop(columns=["_sidewalk"]),
        "trees": d.trees,
        "green": d.green,
        "water": d.water,
        "furniture": d.furniture,
        "facilities": d.extras["facilities"],
    }
    if "overlays" not in skip:
        d.extras["frames"].update(
            {
                "cameras": d.cameras,
                "checkpoints": d.checkpoints,
                "geofences": d.geofences,
                "workers": d.workers,
                "population": d.population,
                "events": d.events,
                "surveys": d.extras["surveys"],
                "care_households": d.extras["care_households"],
                "care_visits": d.extras["care_visits"],
            }
        )
    return d


def _copy(frame, name: str, c: int, dx: float, dy: float):
    out = frame.copy()
    for col in ID_COLS[name]:
        out[col] = suffix_ids(out[col].to_numpy(), c)
    if isinstance(out, gpd.GeoDataFrame):
        if dx or dy:
            out["geometry"] = shapely.transform(out.geometry.values, lambda xy: xy + np.array([dx, dy]))
        if name == "cameras":
            out["stream_url"] = [
                u.rsplit("/", 1)[0] + "/" + i for u, i in zip(out["stream_url"], out["id"], strict=True)
            ]
    if name == "events":
        out["x"] = np.round(out["x"] + dx, 2)
        out["y"] = np.round(out["y"] + dy, 2)
    return out


def generate(
    out_dir: Path,
    seed: int = 7,
    scale: int = 1,
    layers: list[str] | str | None = None,
    scale_overlays: bool = False,
) -> dict:
    """Write OUT/clean/* and OUT/dirty/*; returns a summary (counts per file, area, seconds).

    Memory is bounded by one district copy: with ``scale=K`` every layer is written copy by copy.
    ``layers`` chooses what to write (see ``LAYERS``; default all). The overlays (workers, cameras,
    checkpoints, geofences, population, events, GPS) are the first copy's only — sized for one
    district — unless ``scale_overlays`` copies them K x K times like the survey layers.
    """
    t0 = time.perf_counter()
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    layers = parse_layers(layers) if layers is None or isinstance(layers, str) else parse_layers(",".join(layers))
    out_dir = Path(out_dir)
    clean = out_dir / "clean"
    clean.mkdir(parents=True, exist_ok=True)
    writers.fix_dates()
    d = build_district(seed, layers)
    x0, y_top, ncols, nrows = terrain.dem_grid(d.boundary)
    step_x, step_y = ncols * DEM_RES_M, nrows * DEM_RES_M
    copies = [(j * scale + i, i * step_x, j * step_y) for j in range(scale) for i in range(scale)]
    first = copies[:1]
    counts: dict[str, int] = {}
    frames = d.extras["frames"]
    chosen = {"boundary"} | {f for n in layers for f in LAYERS[n]}
    for name in VECTOR_LAYERS + CSV_LAYERS:
        if name not in chosen:
            continue
        todo = first if name in OVERLAY_FRAMES and not scale_overlays else copies
        parts = (_copy(frames[name], name, c, dx, dy) for c, dx, dy in todo)
        if name in VECTOR_LAYERS:
            counts[f"{name}.gpkg"] = stream.append_gpkg(parts, clean / f"{name}.gpkg")
        else:
            counts[f"{name}.csv"] = stream.append_csv(parts, clean / f"{name}.csv")
    if "buildings" in layers:
        counts["buildings_shp/buildings.shp"] = stream.append_shp(
            (writers.shp_frame(_copy(frames["buildings"], "buildings", c, dx, dy)) for c, dx, dy in copies),
            clean / "buildings_shp",
        )
    if "dem" in layers:
        # DEM mosaic: copies abut exactly (offsets are whole DEM widths/heights)
        from rasterio.transform import from_origin

        top_left = from_origin(x0, y_top + (scale - 1) * step_y, DEM_RES_M, DEM_RES_M)
        counts["dem.tif"] = stream.write_dem_tiled(clean / "dem.tif", d.dem[0], top_left, scale, terrain.write_dem)
    # orthophoto and reality mesh: the first district copy only (0.25 m imagery grows fast)
    if "ortho" in layers or "mesh" in layers:
        t_img = time.perf_counter()
        ortho_rgb, ortho_tr = ortho.render(d)
        if "ortho" in layers:
            ortho.write_cog(clean / "ortho.tif", ortho_rgb, ortho_tr)
            counts["ortho.tif"] = int(ortho_rgb.shape[1] * ortho_rgb.shape[2])
        if "mesh" in layers:
            mesh_counts = mesh.write(d, clean / "mesh", ortho_rgb, ortho_tr)
            counts["mesh/ triangles"] = mesh_counts["triangles"]
        del ortho_rgb
        log.info("generator: ortho + mesh %.1f s", time.perf_counter() - t_img)
    if "pointcloud" in layers:
        xy, z, cl, rgb = d.extras["pointcloud"]
        terrain.write_las(clean / "pointcloud.las", xy, z, cl, rgb)
        counts["pointcloud.las"] = len(z)
    if "overlays" in layers:
        counts["gps_fixes/"] = _write_gps(d, clean / "gps_fixes", copies if scale_overlays else first)
    if "dirty" in layers:
        # the first copy's layers (ids unsuffixed): defects are about kinds, not volume
        counts["dirty"] = dirty.write(rng_for(seed, "dirty"), frames, out_dir / "dirty", seed)
    seconds = round(time.perf_counter() - t0, 1)
    area = float(d.boundary.area)
    _readme(clean / "README.txt", seed, scale, counts, area, layers, scale_overlays)
    return {
        "out": str(out_dir),
        "seed": seed,
        "scale": scale,
        "layers": ",".join(layers),
        "area_km2": round(area * scale * scale / 1e6, 3),
        **counts,
        "seconds": seconds,
    }


def _write_gps(d: District, folder: Path, copies) -> int:
    """GPS fixes of the given copies, one Parquet file per month (``gps_fixes/YYYY-MM.parquet``)."""
    g = d.extras["gps"]
    tr = Transformer.from_crs(CRS_4548, CRS_4490, always_xy=True)
    dev0 = d.workers["device_id"].to_numpy()
    wrk0 = d.workers["id"].to_numpy()
    out = stream.MonthlyParquet(folder)
    for c, dx, dy in copies:
        lon, lat = tr.transform(g["x"] + dx, g["y"] + dy)
        out.write(
            list(suffix_ids(dev0, c)),
            list(suffix_ids(wrk0, c)),
            {
                "code": g["worker_index"],
                "t": g["t"],
                "lon": np.round(lon, 7),
                "lat": np.round(lat, 7),
                "speed": g["speed"],
                "accuracy": g["accuracy"],
            },
        )
    return out.close()


def _readme(
    path: Path, seed: int, scale: int, counts: dict, area: float, layers: list[str], scale_overlays: bool
) -> None:
    lines = [
        "Jiefang Street (解放街道), Longzihu District, Bengbu - sample survey delivery",
        "Generated by `onemap sample generate` (data/generator); contract: docs/sample-delivery.md",
        f"seed: {seed}",
        f"scale: {scale} ({scale}x{scale} district copies; ids of copy i>0 end in -kI)",
        f"district area: {area / 1e6:.3f} km2 per copy",
        f"layers: {','.join(layers)}",
        "overlays: " + ("copied with every district" if scale_overlays else "the first copy only (one district)"),
        "CRS: EPSG:4548 (CGCS2000 / 3-degree GK CM 117E); heights orthometric (1985 datum); "
        "GPS lon/lat EPSG:4490, t in UTC",
        "",
        "counts:",
    ]
    lines += [f"  {k}: {v}" for k, v in counts.items() if k != "dirty"]
    lines += ["", f"dirty/: {counts.get('dirty')} known defects listed in dirty/manifest.json", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
