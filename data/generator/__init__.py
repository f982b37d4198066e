"""Deterministic sample-district generator: ``generate(out_dir, seed, scale)`` writes the survey
delivery of Jiefang Street described in docs/sample-delivery.md (clean/ and dirty/).

One district is generated; ``scale=K`` lays K x K translated copies side by side (each copy's DEM
abuts the next, ids of copy i>0 get ``-kI``), so every volume grows with K².
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import Transformer

from . import buildings, dirty, furniture, layout, mesh, ortho, overlays, roads, terrain, vegetation, writers
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
    "cameras": ["id"],
    "checkpoints": ["id", "grid_id"],
    "geofences": ["id", "worker_id"],
    "workers": ["id", "device_id", "grid_id"],
    "population": ["person_id", "building_id"],
    "events": ["id", "worker_id"],
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
    "cameras",
    "checkpoints",
    "geofences",
]
CSV_LAYERS = ["workers", "population", "events"]


def build_district(seed: int) -> District:
    """Generate one district copy in memory (all modules, fixed order)."""
    d = District(seed)
    steps = [
        ("layout", layout.build),
        ("roads", roads.build),
        ("buildings", buildings.build),
        ("vegetation", vegetation.build),
        ("furniture", furniture.build),
        ("terrain", terrain.build_dem),
        ("pointcloud", terrain.build_pointcloud),
        ("overlays", overlays.build),
    ]
    for name, fn in steps:
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
        "cameras": d.cameras,
        "checkpoints": d.checkpoints,
        "geofences": d.geofences,
        "workers": d.workers,
        "population": d.population,
        "events": d.events,
    }
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


def generate(out_dir: Path, seed: int = 7, scale: int = 1) -> dict:
    """Write OUT/clean/* and OUT/dirty/*; returns a summary (counts per file, area, seconds)."""
    t0 = time.perf_counter()
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    out_dir = Path(out_dir)
    clean = out_dir / "clean"
    clean.mkdir(parents=True, exist_ok=True)
    writers.fix_dates()
    d = build_district(seed)
    x0, y_top, ncols, nrows = terrain.dem_grid(d.boundary)
    step_x, step_y = ncols * DEM_RES_M, nrows * DEM_RES_M
    copies = [(j * scale + i, i * step_x, j * step_y) for j in range(scale) for i in range(scale)]
    counts: dict[str, int] = {}
    frames = d.extras["frames"]
    merged = {}
    for name in VECTOR_LAYERS + CSV_LAYERS:
        parts = [_copy(frames[name], name, c, dx, dy) for c, dx, dy in copies]
        df = pd.concat(parts, ignore_index=True)
        if name in VECTOR_LAYERS:
            df = gpd.GeoDataFrame(df, geometry="geometry", crs=CRS_4548)
            counts[f"{name}.gpkg"] = writers.write_gpkg(df, clean / f"{name}.gpkg")
        else:
            counts[f"{name}.csv"] = writers.write_csv(df, clean / f"{name}.csv")
        merged[name] = df
    counts["buildings_shp/buildings.shp"] = writers.write_shp(
        writers.shp_frame(merged["buildings"]), clean / "buildings_shp"
    )
    # DEM mosaic: copies abut exactly (offsets are whole DEM widths/heights)
    arr, tr = d.dem
    mosaic = np.tile(arr, (scale, scale))
    from rasterio.transform import from_origin

    terrain.write_dem(
        clean / "dem.tif", mosaic, from_origin(x0, y_top + (scale - 1) * step_y, DEM_RES_M, DEM_RES_M)
    )
    counts["dem.tif"] = int(mosaic.size)
    # orthophoto and reality mesh: the first district copy only (0.25 m imagery grows fast)
    t_img = time.perf_counter()
    ortho_rgb, ortho_tr = ortho.render(d)
    ortho.write_cog(clean / "ortho.tif", ortho_rgb, ortho_tr)
    counts["ortho.tif"] = int(ortho_rgb.shape[1] * ortho_rgb.shape[2])
    mesh_counts = mesh.write(d, clean / "mesh", ortho_rgb, ortho_tr)
    counts["mesh/ triangles"] = mesh_counts["triangles"]
    del ortho_rgb
    log.info("generator: ortho + mesh %.1f s", time.perf_counter() - t_img)
    xy, z, cl, rgb = d.extras["pointcloud"]
    terrain.write_las(clean / "pointcloud.las", xy, z, cl, rgb)
    counts["pointcloud.las"] = len(z)
    counts["gps_fixes.parquet"] = _write_gps(d, clean / "gps_fixes.parquet", copies)
    counts["dirty"] = dirty.write(rng_for(seed, "dirty"), merged, out_dir / "dirty", seed)
    seconds = round(time.perf_counter() - t0, 1)
    area = float(d.boundary.area)
    _readme(clean / "README.txt", seed, scale, counts, area)
    return {
        "out": str(out_dir),
        "seed": seed,
        "scale": scale,
        "area_km2": round(area * scale * scale / 1e6, 3),
        **counts,
        "seconds": seconds,
    }


def _write_gps(d: District, path: Path, copies) -> int:
    g = d.extras["gps"]
    tr = Transformer.from_crs(CRS_4548, CRS_4490, always_xy=True)
    dev0 = d.workers["device_id"].to_numpy()
    wrk0 = d.workers["id"].to_numpy()

    def parts():
        for c, dx, dy in copies:
            lon, lat = tr.transform(g["x"] + dx, g["y"] + dy)
            yield (
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

    return writers.write_gps_parquet(path, parts())


def _readme(path: Path, seed: int, scale: int, counts: dict, area: float) -> None:
    lines = [
        "Jiefang Street (解放街道), Longzihu District, Bengbu - sample survey delivery",
        "Generated by `onemap sample generate` (data/generator); contract: docs/sample-delivery.md",
        f"seed: {seed}",
        f"scale: {scale} ({scale}x{scale} district copies; ids of copy i>0 end in -kI)",
        f"district area: {area / 1e6:.3f} km2 per copy",
        "CRS: EPSG:4548 (CGCS2000 / 3-degree GK CM 117E); heights orthometric (1985 datum); "
        "GPS lon/lat EPSG:4490, t in UTC",
        "",
        "counts:",
    ]
    lines += [f"  {k}: {v}" for k, v in counts.items() if k != "dirty"]
    lines += ["", f"dirty/: {counts.get('dirty')} known defects listed in dirty/manifest.json", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
