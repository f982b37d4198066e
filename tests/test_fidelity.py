"""Fidelity of what the tiles hold, checked independently of the pipelines' own code.

A. Buildings delivered in EPSG:4548, 4326, 3857, 32650 (near Bengbu) and 28992 (RD New, Delft):
   every vertex back in the source CRS within 1 cm after the round trip through ECEF, footprint
   area within 0.1 %, base on the DEM within 0.2 m, heights geoid-correct against an independent
   pyproj computation (EPSG:4979 → WGS 84 + EGM96 height, EPSG:4326+5773, with the egm96 grid).
B. Roads, green and water surfaces are never below the terrain Cesium draws: compared with the
   triangles of the quantized-mesh tiles of the terrain pipeline (decoded here), not the DEM.
"""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyproj
import pytest
import rasterio
import shapely
from pyproj import CRS, Transformer
from rasterio.transform import from_origin

from core import frames
from tiles.gltf_read import read_glb

GTX = Path("/usr/share/proj/egm96_15.gtx")
pytestmark = pytest.mark.skipif(not GTX.exists(), reason="proj-data (egm96_15.gtx) missing")
if GTX.exists():
    pyproj.datadir.append_data_dir("/usr/share/proj")

BENGBU = (117.385, 32.92)
DELFT = (4.36, 52.01)


def egm96_n(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Independent EGM96 undulation: PROJ's own EPSG:4979 → EPSG:4326+5773 (egm96_15.gtx)."""
    t = Transformer.from_crs(CRS.from_epsg(4979), CRS.from_user_input("EPSG:4326+5773"), always_xy=True,
                             only_best=True)
    _, _, h_ortho = t.transform(lon, lat, np.zeros_like(lon))
    assert np.all(np.isfinite(h_ortho)) and np.all(np.abs(h_ortho) > 0.5), "geoid grid not applied"
    return -np.asarray(h_ortho)


def ecef_to_source(ecef: np.ndarray, crs: str) -> np.ndarray:
    """ECEF → (x, y in ``crs``, orthometric H) — PROJ for the horizontal, independent EGM96."""
    llh = frames.ecef_to_lonlat_ellipsoidal(ecef)
    t = Transformer.from_crs(CRS.from_epsg(4326), CRS.from_user_input(crs), always_xy=True)
    x, y = t.transform(llh[:, 0], llh[:, 1])
    return np.column_stack([x, y, llh[:, 2] - egm96_n(llh[:, 0], llh[:, 1])])


# ------------------------------------------------------------------------------------ A. buildings
DEM_SLOPE = (0.01, -0.006)


def write_dem(path: Path, crs: str, lonlat: tuple[float, float], half: float = 400.0, res: float = 2.0) -> tuple:
    """A tilted-plane DEM (orthometric) in ``crs`` (a metric CRS) centred on lonlat."""
    cx, cy = Transformer.from_crs(4326, crs, always_xy=True).transform(*lonlat)
    n = int(2 * half / res)
    xs = cx - half + res * (np.arange(n) + 0.5)
    ys = cy + half - res * (np.arange(n) + 0.5)
    xx, yy = np.meshgrid(xs, ys)
    z = 20.0 + DEM_SLOPE[0] * (xx - cx) + DEM_SLOPE[1] * (yy - cy)
    with rasterio.open(path, "w", driver="GTiff", width=n, height=n, count=1, dtype="float32", crs=crs,
                       transform=from_origin(cx - half, cy + half, res, res), nodata=-9999.0) as ds:
        ds.write(z.astype(np.float32), 1)
    return cx, cy


def footprints_local() -> list[shapely.Polygon]:
    """Metre-sized shapes around (0, 0): rectangles, a rotated one, an L, one with a courtyard."""
    rect = shapely.box(-60, -40, -40, -25)
    rot = shapely.affinity.rotate(shapely.box(10, 10, 42, 22), 33, origin=(26, 16))
    ell = shapely.Polygon([(60, -60), (90, -60), (90, -50), (70, -50), (70, -20), (60, -20)])
    court = shapely.Polygon([(-80, 40), (-40, 40), (-40, 80), (-80, 80)],
                            [[(-70, 50), (-50, 50), (-50, 70), (-70, 70)]])
    return [rect, rot, ell, court]


CASES = [("EPSG:4548", BENGBU), ("EPSG:4326", BENGBU), ("EPSG:3857", BENGBU), ("EPSG:32650", BENGBU),
         ("EPSG:28992", DELFT)]


@pytest.mark.parametrize(("crs", "where"), CASES, ids=[c for c, _ in CASES])
def test_building_round_trip(tmp_path: Path, crs: str, where: tuple[float, float]) -> None:
    from pipelines.buildings import BuildingOptions, build_buildings

    metric = "EPSG:4548" if where == BENGBU else "EPSG:28992"  # where the shapes are drawn in metres
    cx, cy = write_dem(tmp_path / "dem.tif", metric, where)
    to_src = Transformer.from_crs(metric, crs, always_xy=True)
    shapes_m = [shapely.affinity.translate(p, cx, cy) for p in footprints_local()]
    shapes = [shapely.transform(p, lambda c: np.column_stack(to_src.transform(c[:, 0], c[:, 1])))
              for p in shapes_m]
    heights = [12.0, 30.5, 7.25, 18.0]
    ids = [f"B{i}" for i in range(len(shapes))]
    gpd.GeoDataFrame({"id": ids, "height": heights}, geometry=shapes, crs=crs).to_file(tmp_path / "b.gpkg")
    out = tmp_path / "out"
    res = build_buildings(tmp_path / "b.gpkg", out, BuildingOptions(dem=tmp_path / "dem.tif", lod=1, workers=1))
    assert res.report.counts["written"] == len(ids)

    ts = json.loads((out / "tileset.json").read_text())
    m = np.array(ts["root"]["transform"]).reshape(4, 4).T
    seen = set()
    for glb_path in (out / "tiles").rglob("*.glb"):
        glb = read_glb(glb_path.read_bytes())
        table = glb.property_table()
        enu = frames.gltf_to_enu(glb.attribute("POSITION").astype(np.float64))
        src = ecef_to_source(enu @ m[:3, :3].T + m[:3, 3], crs)
        fid = glb.attribute("_FEATURE_ID_0").astype(int)
        tri = glb.indices().reshape(-1, 3)
        for k, bid in enumerate(table["id"]):
            if bid in seen:
                continue
            seen.add(bid)
            i = ids.index(bid)
            pts = src[fid == k]
            ring = shapely.get_coordinates(shapes[i])
            scale = 1.0 if crs != "EPSG:4326" else 1e-7  # 1 cm in degrees ≈ 9e-8
            # every tile vertex is a source vertex (1 cm) and every source vertex is in the tile
            d = np.linalg.norm(pts[:, None, :2] - ring[None, :, :], axis=2)
            assert d.min(axis=1).max() < 0.01 * scale, (crs, bid, d.min(axis=1).max())
            assert d.min(axis=0).max() < 0.01 * scale
            # footprint area: the roof triangles (horizontal, at the top) in the source CRS
            t = tri[(fid[tri[:, 0]] == k)]
            top = pts[:, 2].max()
            a, b, c = src[t[:, 0]], src[t[:, 1]], src[t[:, 2]]
            flat = (np.abs(a[:, 2] - top) < 0.02) & (np.abs(b[:, 2] - top) < 0.02) & (np.abs(c[:, 2] - top) < 0.02)
            area = 0.5 * np.abs(np.cross(b[flat, :2] - a[flat, :2], c[flat, :2] - a[flat, :2])).sum()
            assert area == pytest.approx(shapes[i].area, rel=1e-3)
            # base on the DEM (lowest ground under the footprint), heights with the right geoid
            xm, ym = Transformer.from_crs(crs, metric, always_xy=True).transform(ring[:, 0], ring[:, 1])
            dem_min = (20.0 + DEM_SLOPE[0] * (np.asarray(xm) - cx) + DEM_SLOPE[1] * (np.asarray(ym) - cy)).min()
            base = pts[:, 2].min()
            assert abs(base - dem_min) < 0.2, (crs, bid, base, dem_min)
            assert top - base == pytest.approx(heights[i], abs=0.02)
    assert seen == set(ids)


# ------------------------------------------------------------------------------------ B. terrain
def decode_quantized_mesh(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float, float]:
    """(u, v, h as 0..32767, triangles (T,3), min_h, max_h) of one quantized-mesh-1.0 tile."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    min_h, max_h = struct.unpack_from("<2f", data, 24)
    n = struct.unpack_from("<I", data, 88)[0]
    pos = 92

    def zigzag(a: np.ndarray) -> np.ndarray:
        a = a.astype(np.int64)
        return np.cumsum((a >> 1) ^ -(a & 1)).astype(np.int64)

    u = zigzag(np.frombuffer(data, "<u2", n, pos))
    v = zigzag(np.frombuffer(data, "<u2", n, pos + 2 * n))
    h = zigzag(np.frombuffer(data, "<u2", n, pos + 4 * n))
    pos += 6 * n
    wide = n > 65536
    if pos % (4 if wide else 2):
        pos += (4 if wide else 2) - pos % (4 if wide else 2)
    t = struct.unpack_from("<I", data, pos)[0]
    pos += 4
    codes = np.frombuffer(data, "<u4" if wide else "<u2", 3 * t, pos).astype(np.int64)
    idx = np.empty_like(codes)
    highest = 0
    for i, c in enumerate(codes):
        idx[i] = highest - c
        if c == 0:
            highest += 1
    return u, v, h, idx.reshape(-1, 3), float(min_h), float(max_h)


class TerrainSurface:
    """The finest-level terrain Cesium draws, as triangles in lon/lat with ellipsoidal heights."""

    def __init__(self, folder: Path) -> None:
        layer = json.loads((folder / "layer.json").read_text())
        self.z = len(layer["available"]) - 1
        self.size = 180.0 / 2 ** self.z
        self.tiles: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        for rng in layer["available"][self.z]:
            for x in range(rng["startX"], rng["endX"] + 1):
                for y in range(rng["startY"], rng["endY"] + 1):
                    u, v, h, tri, lo, hi = decode_quantized_mesh((folder / f"{self.z}/{x}/{y}.terrain").read_bytes())
                    west, south = -180.0 + x * self.size, -90.0 + y * self.size
                    pts = np.column_stack([west + u / 32767 * self.size, south + v / 32767 * self.size,
                                           lo + h / 32767 * (hi - lo)])
                    self.tiles[(x, y)] = (pts, tri)

    def vertices(self) -> np.ndarray:
        return np.concatenate([p for p, _ in self.tiles.values()])

    def height(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """Height of the terrain triangle under each point (NaN outside the terrain)."""
        out = np.full(len(lon), np.nan)
        tx = np.floor((lon + 180.0) / self.size).astype(int)
        ty = np.floor((lat + 90.0) / self.size).astype(int)
        for (x, y), (pts, tri) in self.tiles.items():
            sel = np.flatnonzero((tx == x) & (ty == y))
            if len(sel):
                out[sel] = height_on_triangles(pts, tri, lon[sel], lat[sel])
        return out


def height_on_triangles(pts: np.ndarray, tri: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Barycentric height of the triangle (of ``pts[tri]``) containing each (x, y); NaN if none."""
    a, b, c = pts[tri[:, 0]], pts[tri[:, 1]], pts[tri[:, 2]]
    out = np.full(len(x), np.nan)
    det = (b[:, 1] - c[:, 1]) * (a[:, 0] - c[:, 0]) + (c[:, 0] - b[:, 0]) * (a[:, 1] - c[:, 1])
    ok = np.abs(det) > 0
    a, b, c, det = a[ok], b[ok], c[ok], det[ok]
    for i in range(0, len(x), 256):
        px, py = x[i:i + 256, None], y[i:i + 256, None]
        w1 = ((b[:, 1] - c[:, 1]) * (px - c[:, 0]) + (c[:, 0] - b[:, 0]) * (py - c[:, 1])) / det
        w2 = ((c[:, 1] - a[:, 1]) * (px - c[:, 0]) + (a[:, 0] - c[:, 0]) * (py - c[:, 1])) / det
        w3 = 1 - w1 - w2
        eps = -1e-9
        inside = (w1 >= eps) & (w2 >= eps) & (w3 >= eps)
        hit = inside.any(axis=1)
        j = inside.argmax(axis=1)
        rows = np.arange(len(px))
        h = w1[rows, j] * a[j, 2] + w2[rows, j] * b[j, 2] + w3[rows, j] * c[j, 2]
        out[i:i + 256] = np.where(hit, h, np.nan)
    return out


X0, Y0 = 536_000.0, 3_644_000.0  # Jiefang Street, EPSG:4548
LAKE = shapely.Polygon([(X0 + 60, Y0 - 160), (X0 + 180, Y0 - 160), (X0 + 180, Y0 - 60), (X0 + 60, Y0 - 60)])
LAKE_LEVEL = 16.0


def hills(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Rolling ground (orthometric): hills a few metres high, a flat lake bed at LAKE_LEVEL - 1."""
    dx, dy = np.asarray(x) - X0, np.asarray(y) - Y0
    z = 20.0 + 3.0 * np.sin(dx / 37.0) * np.cos(dy / 53.0) + 0.02 * dx
    lake = shapely.contains_xy(LAKE.buffer(8), np.asarray(x), np.asarray(y))
    return np.where(lake, LAKE_LEVEL - 1.0, z)


@pytest.fixture(scope="module")
def draped(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from pipelines.roads import RoadOptions, build_roads
    from pipelines.terrain import TerrainOptions, build_terrain
    from pipelines.vegetation import VegetationOptions, build_vegetation

    d = tmp_path_factory.mktemp("drape")
    half, res = 300.0, 2.0
    n = int(2 * half / res)
    xs = X0 - half + res * (np.arange(n) + 0.5)
    ys = Y0 + half - res * (np.arange(n) + 0.5)
    xx, yy = np.meshgrid(xs, ys)
    with rasterio.open(d / "dem.tif", "w", driver="GTiff", width=n, height=n, count=1, dtype="float32",
                       crs="EPSG:4548", transform=from_origin(X0 - half, Y0 + half, res, res),
                       nodata=-9999.0) as ds:
        ds.write(hills(xx, yy).astype(np.float32), 1)
    roads = [shapely.LineString([(X0 - 250, Y0 + 10 * k - 40), (X0 + 250, Y0 + 25 * k)]) for k in range(5)]
    roads += [shapely.LineString([(X0 - 30 * k, Y0 - 250), (X0 + 20 * k - 60, Y0 + 250)]) for k in range(4)]
    gpd.GeoDataFrame({"id": [f"R{i}" for i in range(len(roads))], "name": "路", "class": "residential",
                      "width": 8.0}, geometry=roads, crs="EPSG:4548").to_file(d / "roads.gpkg")
    green = [shapely.box(X0 - 200, Y0 + 100, X0 - 40, Y0 + 220), shapely.Point(X0 + 120, Y0 + 150).buffer(60)]
    gpd.GeoDataFrame({"id": ["G1", "G2"], "kind": "park"}, geometry=green, crs="EPSG:4548").to_file(d / "green.gpkg")
    gpd.GeoDataFrame({"id": ["W1"], "name": "湖", "water_level": [LAKE_LEVEL]}, geometry=[LAKE],
                     crs="EPSG:4548").to_file(d / "water.gpkg")
    gpd.GeoDataFrame({"id": ["T1"], "height": [8.0]}, geometry=[shapely.Point(X0 - 120, Y0 + 160)],
                     crs="EPSG:4548").to_file(d / "trees.gpkg")
    build_terrain(d / "dem.tif", d / "terrain", TerrainOptions(water=d / "water.gpkg"))
    build_roads(d / "roads.gpkg", d / "roads", RoadOptions(dem=d / "dem.tif"))
    build_vegetation(d / "trees.gpkg", d / "veg", VegetationOptions(dem=d / "dem.tif", green=d / "green.gpkg",
                                                                    water=d / "water.gpkg"))
    return {"dir": d, "terrain": TerrainSurface(d / "terrain")}


def surface_triangles(tileset: Path) -> np.ndarray:
    """(T,3,3) leaf triangles of a tileset as lon, lat, ellipsoidal h."""
    ts = json.loads(tileset.read_text())
    m = np.array(ts["root"]["transform"]).reshape(4, 4).T
    out = []

    def walk(tile: dict) -> None:
        if not tile.get("children") and "content" in tile:
            glb = read_glb((tileset.parent / tile["content"]["uri"]).read_bytes())
            enu = frames.gltf_to_enu(glb.attribute("POSITION").astype(np.float64))
            llh = frames.ecef_to_lonlat_ellipsoidal(enu @ m[:3, :3].T + m[:3, 3])
            out.append(llh[glb.indices().reshape(-1, 3)])
        for c in tile.get("children", []):
            walk(c)

    walk(ts["root"])
    return np.concatenate(out)


@pytest.mark.parametrize("layer", ["roads/tileset.json", "veg/areas/tileset.json"])
def test_surfaces_never_below_the_terrain_mesh(draped: dict, layer: str) -> None:
    terrain: TerrainSurface = draped["terrain"]
    tris = surface_triangles(draped["dir"] / layer)
    assert len(tris) > 100
    # 1. every surface vertex is on or above the terrain triangle under it
    v = tris.reshape(-1, 3)
    th = terrain.height(v[:, 0], v[:, 1])
    ok = np.isfinite(th)
    assert ok.mean() > 0.95
    gap = v[ok, 2] - th[ok]
    assert gap.min() > 0.0, f"{layer}: a vertex is {-gap.min():.3f} m below the terrain mesh"
    # 2. every terrain vertex under a surface triangle is below that triangle
    tv = terrain.vertices()
    lo, hi = v[:, :2].min(axis=0), v[:, :2].max(axis=0)
    tv = tv[(tv[:, 0] >= lo[0]) & (tv[:, 0] <= hi[0]) & (tv[:, 1] >= lo[1]) & (tv[:, 1] <= hi[1])]
    flat_pts = tris.reshape(-1, 3)
    surf_h = height_on_triangles(flat_pts, np.arange(len(flat_pts)).reshape(-1, 3), tv[:, 0], tv[:, 1])
    under = np.isfinite(surf_h)
    assert under.sum() > 10
    gap2 = surf_h[under] - tv[under, 2]
    assert gap2.min() > 0.0, f"{layer}: a terrain vertex is {-gap2.min():.3f} m above the surface"


@pytest.mark.parametrize(("crs", "where"), CASES, ids=[c for c, _ in CASES])
def test_point_features_round_trip(tmp_path: Path, crs: str, where: tuple[float, float]) -> None:
    """Street furniture (exactly positioned) in each CRS: back in the source CRS within 1 cm, on the
    DEM (orthometric, independent EGM96) within 0.2 m."""
    from pipelines.furniture import FurnitureOptions, build_furniture
    from tiles.instancing import decode_instanced_glb

    metric = "EPSG:4548" if where == BENGBU else "EPSG:28992"
    cx, cy = write_dem(tmp_path / "dem.tif", metric, where)
    rng = np.random.default_rng(3)
    xm, ym = cx + rng.uniform(-300, 300, 40), cy + rng.uniform(-300, 300, 40)
    x, y = Transformer.from_crs(metric, crs, always_xy=True).transform(xm, ym)
    ids = [f"P{i}" for i in range(40)]
    gpd.GeoDataFrame({"id": ids, "type": "street_lamp", "heading": 0.0},
                     geometry=shapely.points(np.column_stack([x, y])), crs=crs).to_file(tmp_path / "f.gpkg")
    out = tmp_path / "out"
    build_furniture(tmp_path / "f.gpkg", out, FurnitureOptions(dem=tmp_path / "dem.tif"))
    ts = json.loads((out / "tileset.json").read_text())
    m = np.array(ts["root"]["transform"]).reshape(4, 4).T
    got: dict[str, np.ndarray] = {}

    def walk(tile: dict) -> None:
        if not tile.get("children") and "content" in tile:
            nodes, table = decode_instanced_glb((out / tile["content"]["uri"]).read_bytes())
            for node in nodes:
                src = ecef_to_source(node.translations_enu @ m[:3, :3].T + m[:3, 3], crs)
                for f, p in zip(node.feature_ids, src, strict=True):
                    got[str(table["id"][f])] = p
        for c in tile.get("children", []):
            walk(c)

    walk(ts["root"])
    assert sorted(got) == sorted(ids)
    p = np.array([got[i] for i in ids])
    tol = 0.01 if crs != "EPSG:4326" else 1e-7
    assert np.abs(p[:, 0] - np.asarray(x)).max() < tol and np.abs(p[:, 1] - np.asarray(y)).max() < tol
    dem = 20.0 + DEM_SLOPE[0] * (xm - cx) + DEM_SLOPE[1] * (ym - cy)
    assert np.abs(p[:, 2] - dem).max() < 0.2
