"""Real open data (tests/data/README.md) through the CLI: `onemap tiles buildings|roads|furniture`
with field names only, then `onemap tiles validate` with 0 errors, and every feature accounted for
against what the tiles really hold (ids read back from the glb property tables)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tiles.gltf_read import read_glb

DATA = Path(__file__).parent / "data"
ONEMAP = Path(sys.executable).parent / "onemap"
GTX = Path("/usr/share/proj/egm96_15.gtx")
pytestmark = pytest.mark.skipif(not GTX.exists(), reason="proj-data (egm96_15.gtx) missing")


def onemap(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(ONEMAP), *map(str, args)], capture_output=True, text=True, timeout=600)


def tile_ids(out: Path) -> list[str]:
    """Every feature id in every content of the tileset (leaves hold every feature once)."""
    ids: list[str] = []

    def walk(tile: dict, base: Path) -> None:
        uri = (tile.get("content") or {}).get("uri")
        if uri and not tile.get("children"):
            path = base / uri
            if path.suffix == ".json":
                walk(json.loads(path.read_text())["root"], path.parent)
            else:
                table = read_glb(path.read_bytes()).property_table()
                ids.extend(str(i) for i in table.get("id", []))
        for child in tile.get("children", []):
            walk(child, base)

    walk(json.loads((out / "tileset.json").read_text())["root"], out)
    return ids


def _report(out: Path) -> dict:
    doc = json.loads((out / "report.json").read_text())
    return doc["layers"][0] if "layers" in doc else doc


def _check(out: Path, src_count: int) -> dict:
    v = onemap("tiles", "validate", out, "--no-gltf")
    assert v.returncode == 0, v.stdout + v.stderr
    rep = _report(out)
    counts = rep["counts"]
    ids = tile_ids(out)
    assert len(ids) == len(set(ids)) == counts["written"]
    assert counts["input"] == src_count == counts["written"] + counts["rejected"]
    rejected = {r["id"] for r in rep.get("rejected", [])}
    assert not rejected & set(ids)
    return rep


def _count(path: Path) -> int:
    import pyogrio

    return int(pyogrio.read_info(path)["features"])


def test_osm_finland_buildings_with_levels(tmp_path: Path) -> None:
    src = DATA / "kouvola_osm" / "buildings.gpkg"
    out = tmp_path / "b"
    r = onemap("tiles", "buildings", src, "--out", out, "--floors-field", "levels")
    assert r.returncode == 0, r.stdout + r.stderr
    rep = _check(out, _count(src))
    assert rep["counts"]["written"] >= 10  # every building with building:levels
    assert set(rep["rejected_by_code"]) <= {"missing_height", "duplicate", "zero_area", "duplicate_id"}


def test_osm_finland_roads_with_names(tmp_path: Path) -> None:
    src = DATA / "kouvola_osm" / "roads.gpkg"
    out = tmp_path / "r"
    r = onemap("tiles", "roads", src, "--out", out, "--mapping", DATA / "kouvola_osm" / "roads.yaml")
    assert r.returncode == 0, r.stdout + r.stderr
    _check(out, _count(src))
    names = set()
    for tile in (out / "tiles").rglob("*.glb"):
        names |= {str(n) for n in read_glb(tile.read_bytes()).property_table().get("name", [])}
    assert {"Haapamäenkatu", "Kääpäkatu"} <= names  # UTF-8 with diacritics, untouched
    # positions: every leaf vertex of a road lies on its own centreline's buffer (half width + 5 cm)
    import geopandas as gpd
    import shapely
    from pyproj import Transformer

    from core import frames

    ts = json.loads((out / "tileset.json").read_text())
    m = np.array(ts["root"]["transform"]).reshape(4, 4).T
    lines = gpd.read_file(src).to_crs(3067).set_index("id").geometry  # ETRS-TM35FIN, metres
    to_3067 = Transformer.from_crs(4326, 3067, always_xy=True)
    checked = 0

    def walk(tile: dict) -> None:
        nonlocal checked
        if not tile.get("children") and "content" in tile:
            glb = read_glb((out / tile["content"]["uri"]).read_bytes())
            table = glb.property_table()
            enu = frames.gltf_to_enu(glb.attribute("POSITION").astype(np.float64))
            llh = frames.ecef_to_lonlat_ellipsoidal(enu @ m[:3, :3].T + m[:3, 3])
            x, y = to_3067.transform(llh[:, 0], llh[:, 1])
            fid = glb.attribute("_FEATURE_ID_0").astype(int)
            for k, rid in enumerate(table["id"]):
                sel = fid == k
                d = shapely.distance(lines[str(rid)], shapely.points(x[sel], y[sel]))
                assert d.max() < float(table["width"][k]) / 2 + 0.05, (rid, d.max())
                checked += int(sel.sum())
        for c in tile.get("children", []):
            walk(c)

    walk(ts["root"])
    assert checked > 1000


def test_osm_finland_bus_stops_as_furniture(tmp_path: Path) -> None:
    src = DATA / "kouvola_osm" / "bus_stops.gpkg"
    out = tmp_path / "f"
    r = onemap("tiles", "furniture", src, "--out", out, "--mapping", DATA / "kouvola_osm" / "bus_stops.yaml")
    assert r.returncode == 0, r.stdout + r.stderr
    rep = _check(out, _count(src))
    assert rep["counts"]["written"] == 36


def test_british_national_grid_buildings(tmp_path: Path) -> None:
    src = DATA / "soho_london" / "buildings.gpkg"
    out = tmp_path / "s"
    r = onemap("tiles", "buildings", src, "--out", out, "--id-field", "cat", "--missing-height", "default")
    assert r.returncode == 0, r.stdout + r.stderr
    rep = _check(out, _count(src))
    assert rep["counts"]["written"] >= 150
    ts = json.loads((out / "tileset.json").read_text())
    assert ts["extras"]["heights"]["geoid"] == "egm96"


# ------------------------------------------------------------------------------------ CityJSON
def _tile_vertices_source_crs(out: Path, crs: str) -> np.ndarray:
    """Every glb vertex of the tileset back in ``crs`` + orthometric height (EGM96)."""
    from pyproj import Transformer

    from core import frames

    ts = json.loads((out / "tileset.json").read_text())
    m = np.array(ts["root"]["transform"]).reshape(4, 4).T
    to_src = Transformer.from_crs(4326, crs, always_xy=True)
    pts = []
    for glb_path in (out / "tiles").rglob("*.glb"):
        glb = read_glb(glb_path.read_bytes())
        enu = frames.gltf_to_enu(glb.attribute("POSITION").astype(np.float64))
        llh = frames.ecef_to_lonlat_ellipsoidal(enu @ m[:3, :3].T + m[:3, 3])
        x, y = to_src.transform(llh[:, 0], llh[:, 1])
        pts.append(np.column_stack([x, y, llh[:, 2] - frames.geoid_undulation(llh[:, 0], llh[:, 1])]))
    return np.concatenate(pts)


def _nearest_distance(a: np.ndarray, b: np.ndarray, cell: float = 0.01) -> np.ndarray:
    """Distance of each point of ``a`` to the nearest point of ``b`` when below ``cell`` (else inf),
    with a hash of ``cell``-sized cubes (the 27 around each point)."""
    grid: dict[tuple[int, int, int], list[int]] = {}
    for i, k in enumerate(map(tuple, np.floor(b / cell).astype(np.int64))):
        grid.setdefault(k, []).append(i)
    out = np.full(len(a), np.inf)
    offsets = [(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)]
    for n, (x, y, z) in enumerate(map(tuple, np.floor(a / cell).astype(np.int64))):
        cand = [i for dx, dy, dz in offsets for i in grid.get((x + dx, y + dy, z + dz), ())]
        if cand:
            out[n] = np.linalg.norm(b[cand] - a[n], axis=1).min()
    return out


@pytest.mark.parametrize(("folder", "name", "crs", "extra"), [
    ("3dbag_nl", "tile_901_trimmed.city.jsonl", "EPSG:28992", ()),
    ("vienna_at", "vienna_trimmed.city.jsonl", "EPSG:31256", ("--src-crs", "EPSG:31256")),
])
def test_cityjson_lod2_real_data(tmp_path: Path, folder: str, name: str, crs: str, extra: tuple[str, ...]) -> None:
    from core.delivery.cityjson import read_cityjson

    src = DATA / folder / name
    out = tmp_path / folder
    r = onemap("tiles", "buildings", src, "--out", out, *extra)
    assert r.returncode == 0, r.stdout + r.stderr
    model = read_cityjson(src, lod="2")
    rep = _check(out, len(model.buildings) + len(model.problems))
    assert rep["counts"]["written"] == len(model.buildings) > 40
    # the tiles are the source surfaces: every vertex is a source vertex (1 cm), every roof vertex is there
    tile_v = _tile_vertices_source_crs(out, crs)
    src_v = np.concatenate([r for b in model.buildings for s in b.surfaces for r in s.rings])
    assert _nearest_distance(tile_v, src_v).max() < 0.01
    roof_v = np.unique(np.concatenate([s.exterior for b in model.buildings for s in b.of_kind("RoofSurface")]),
                       axis=0)
    if len(roof_v):
        assert _nearest_distance(roof_v, tile_v).max() < 0.01
