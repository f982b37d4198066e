"""A small-but-real district for the viewer tests and benchmark.

The session's sample delivery (seed 7) is clipped to a window around the point-cloud block
(every layer present: buildings, roads, trees, green, water, furniture, DEM, point cloud,
cameras, events, ...), then built with the real tiles pipelines (`onemap tiles build`) and loaded
into PostGIS with the real loaders (`load_sample`).
"""

from __future__ import annotations

import base64
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import laspy
import pandas as pd
import rasterio
import shapely
from rasterio.windows import from_bounds

CRS = "EPSG:4548"
#: half the side of the clipped square (m); 600 m × 600 m holds a few hundred buildings
HALF_SIDE_M = 300.0
DEM_MARGIN_M = 150.0
#: vector layers clipped to the window (features intersecting it are kept whole, lines are cut)
POINT_LAYERS = ("trees", "furniture", "cameras", "checkpoints")
POLYGON_LAYERS_WHOLE = ("buildings",)
CLIP_LAYERS = ("roads", "green", "water")
COPY_LAYERS = ("communities", "grid_cells", "geofences")
ORTHO_MARGIN_M = 100.0
#: reality-mesh export tiles (125 m) copied: the ones nearest the window
MESH_TILES_NEAR = 4


@dataclass(frozen=True)
class Window:
    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def box(self) -> shapely.Geometry:
        return shapely.box(self.x0, self.y0, self.x1, self.y1)

    def grown(self, m: float) -> Window:
        return Window(self.x0 - m, self.y0 - m, self.x1 + m, self.y1 + m)


def pointcloud_window(clean: Path, half_side: float = HALF_SIDE_M) -> Window:
    """A square centred on the point-cloud block of the delivery."""
    header = laspy.open(clean / "pointcloud.las").header
    cx = (header.mins[0] + header.maxs[0]) / 2
    cy = (header.mins[1] + header.maxs[1]) / 2
    return Window(cx - half_side, cy - half_side, cx + half_side, cy + half_side)


def clip_delivery(clean: Path, dst: Path, window: Window) -> Path:
    """Write ``dst/clean`` with every file of ``clean`` restricted to ``window``; returns ``dst``."""
    out = dst / "clean"
    out.mkdir(parents=True, exist_ok=True)
    box = window.box
    gpd.GeoDataFrame({"name": ["解放街道（测试窗口）"], "name_en": ["Jiefang Street (test window)"],
                      "area_m2": [box.area]}, geometry=[box], crs=CRS).to_file(out / "boundary.gpkg", layer="boundary")
    for name in POINT_LAYERS + POLYGON_LAYERS_WHOLE:
        gdf = gpd.read_file(clean / f"{name}.gpkg")
        keep = gdf[gdf.geometry.within(box)]
        keep.to_file(out / f"{name}.gpkg", layer=name)
    for name in CLIP_LAYERS:
        gdf = gpd.read_file(clean / f"{name}.gpkg")
        gdf = gdf[gdf.geometry.intersects(box)].copy()
        gdf["geometry"] = gdf.geometry.intersection(box)
        gdf = gdf[~gdf.geometry.is_empty]
        if name == "roads":
            gdf = gdf.explode(index_parts=False)
            gdf = gdf[gdf.geom_type == "LineString"]
            gdf["id"] = [f"{i}-{k}" if k else i for k, i in _numbered(gdf["id"])]
        gdf.to_file(out / f"{name}.gpkg", layer=name)
    for name in COPY_LAYERS:
        gpd.read_file(clean / f"{name}.gpkg").to_file(out / f"{name}.gpkg", layer=name)
    # DEM with a margin (terrain pyramid and draping)
    grown = window.grown(DEM_MARGIN_M)
    with rasterio.open(clean / "dem.tif") as src:
        win = from_bounds(grown.x0, grown.y0, grown.x1, grown.y1, src.transform).round_offsets().round_lengths()
        data = src.read(1, window=win)
        profile = src.profile | {"width": data.shape[1], "height": data.shape[0],
                                 "transform": src.window_transform(win)}
        with rasterio.open(out / "dem.tif", "w", **profile) as dst_ds:
            dst_ds.write(data, 1)
    (out / "pointcloud.las").write_bytes((clean / "pointcloud.las").read_bytes())
    clip_ortho(clean / "ortho.tif", out / "ortho.tif", window.grown(ORTHO_MARGIN_M))
    copy_mesh_near(clean / "mesh", out / "mesh", window)
    # tables: workers and their fixes whole (a slice of time), people of the kept buildings,
    # events inside the window
    (out / "workers.csv").write_bytes((clean / "workers.csv").read_bytes())
    buildings = set(gpd.read_file(out / "buildings.gpkg", columns=["id"])["id"])
    people = pd.read_csv(clean / "population.csv", dtype=str, keep_default_na=False)
    people[people["building_id"].isin(buildings)].to_csv(out / "population.csv", index=False)
    events = pd.read_csv(clean / "events.csv", dtype=str, keep_default_na=False)
    x, y = events["x"].astype(float), events["y"].astype(float)
    inside = (x > window.x0) & (x < window.x1) & (y > window.y0) & (y < window.y1)
    events[inside].to_csv(out / "events.csv", index=False)
    fixes = pd.read_parquet(clean / "gps_fixes")  # the month files as one table
    last_day = fixes["t"].max().normalize()
    fixes[fixes["t"] >= last_day].to_parquet(out / "gps_fixes.parquet", index=False)
    return dst


def clip_ortho(src: Path, dst: Path, window: Window) -> None:
    """The orthophoto cut to ``window`` (a plain tiled GeoTIFF); nothing when there is none."""
    if not src.exists():
        return
    with rasterio.open(src) as ds:
        win = from_bounds(window.x0, window.y0, window.x1, window.y1, ds.transform).round_offsets().round_lengths()
        data = ds.read(window=win)
        profile = {"driver": "GTiff", "dtype": "uint8", "count": 3, "width": data.shape[2], "height": data.shape[1],
                   "crs": ds.crs, "transform": ds.window_transform(win), "tiled": True, "compress": "jpeg",
                   "photometric": "ycbcr", "jpeg_quality": 92}
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data)


def copy_mesh_near(src: Path, dst: Path, window: Window, n: int = MESH_TILES_NEAR) -> None:
    """The ``n`` reality-mesh export tiles nearest the window (metadata.xml + Data/Tile_*)."""
    if not (src / "metadata.xml").exists():
        return
    import re
    import shutil

    text = (src / "metadata.xml").read_text(encoding="utf-8")
    ox, oy, _oz = (float(v) for v in re.search(r"<SRSOrigin>([^<]+)</SRSOrigin>", text).group(1).split(","))
    cx, cy = (window.x0 + window.x1) / 2, (window.y0 + window.y1) / 2
    dist = []
    for tile in sorted((src / "Data").iterdir()):
        xy = [line.split()[1:3] for line in tile.joinpath(f"{tile.name}.obj").open(encoding="ascii")
              if line.startswith("v ")][::50]
        mx = sum(float(a) for a, _ in xy) / len(xy) + ox
        my = sum(float(b) for _, b in xy) / len(xy) + oy
        dist.append(((mx - cx) ** 2 + (my - cy) ** 2, tile))
    (dst / "Data").mkdir(parents=True, exist_ok=True)
    shutil.copy(src / "metadata.xml", dst / "metadata.xml")
    for _d, tile in sorted(dist)[:n]:
        shutil.copytree(tile, dst / "Data" / tile.name)


def _numbered(ids: pd.Series):  # noqa: ANN202 - generator of (k, id)
    seen: dict[str, int] = {}
    for i in ids:
        k = seen.get(i, 0)
        seen[i] = k + 1
        yield k, i


def build_tiles(delivery: Path, out: Path) -> Path:
    """`onemap tiles build --sample delivery --out out` (the real command); returns ``out``."""
    exe = Path(sys.executable).parent / "onemap"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "onemap.cli"]
    proc = subprocess.run([*cmd, "tiles", "build", "--sample", str(delivery), "--out", str(out)],
                          capture_output=True, text=True, timeout=3600, check=False)
    if proc.returncode != 0 or not (out / "index.json").exists():
        raise RuntimeError(f"onemap tiles build failed ({proc.returncode}):\n"
                           f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return out


# A tiny test clip for camera streams, recorded by Chromium itself (MediaRecorder over a canvas:
# VP8 WebM, no ffmpeg needed).
CLIP_HTML = """<!doctype html><canvas id=c width=320 height=180></canvas><script>
window.record = async (ms) => {
  const c = document.getElementById('c'), g = c.getContext('2d');
  const rec = new MediaRecorder(c.captureStream(10), {mimeType: 'video/webm;codecs=vp8'});
  const parts = []; rec.ondataavailable = (e) => parts.push(e.data);
  const done = new Promise((r) => { rec.onstop = r; });
  let t0 = performance.now(), raf;
  const draw = () => { const t = (performance.now() - t0) / 1000;
    g.fillStyle = '#123'; g.fillRect(0, 0, 320, 180);
    g.fillStyle = '#4aa3ff'; g.fillRect(20 + (t * 80) % 260, 70, 40, 40);
    g.fillStyle = '#fff'; g.font = '20px sans-serif'; g.fillText('CAM TEST ' + t.toFixed(1), 10, 30);
    raf = requestAnimationFrame(draw); };
  draw(); rec.start(); await new Promise((r) => setTimeout(r, ms)); rec.stop(); await done;
  cancelAnimationFrame(raf);
  const buf = new Uint8Array(await new Blob(parts, {type: 'video/webm'}).arrayBuffer());
  let s = ''; for (let i = 0; i < buf.length; i += 8192) s += String.fromCharCode(...buf.subarray(i, i + 8192));
  return btoa(s);
};
</script>"""


def record_test_clip(browser, path: Path, ms: int = 3000) -> Path:  # noqa: ANN001 - playwright Browser
    page = browser.new_page()
    try:
        page.set_content(CLIP_HTML)
        data = base64.b64decode(page.evaluate(f"window.record({int(ms)})"))
    finally:
        page.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
