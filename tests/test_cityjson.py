"""CityJSON deliveries (core/delivery/cityjson.py → pipelines/cityjson_buildings.py): the real LOD2.2
roofs reach the tiles (within 5 cm of the source planes), for .city.json and .city.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import shapely
from pyproj import Transformer

from core import frames
from core.delivery.cityjson import choose_lod, read_cityjson
from pipelines.buildings import BuildingOptions, build_buildings
from tiles.gltf_read import read_glb
from tiles.surface_mesh import triangulate_polygon

GTX = Path("/usr/share/proj") / frames.GEOID_GRID
pytestmark = pytest.mark.skipif(not GTX.exists(), reason="proj-data (egm96_15.gtx) missing")

X0, Y0, Z0 = 84_500.0, 447_000.0, -1.0  # Delft, EPSG:28992 + NAP (EPSG:7415)
SCALE = 0.001

# local metres; every ring counter-clockwise seen from outside
GABLE = {
    "GroundSurface": [[(0, 0, 0), (0, 6, 0), (10, 6, 0), (10, 0, 0)]],
    "WallSurface": [[(0, 0, 0), (10, 0, 0), (10, 0, 6), (0, 0, 6)],
                    [(10, 6, 0), (0, 6, 0), (0, 6, 6), (10, 6, 6)],
                    [(0, 6, 0), (0, 0, 0), (0, 0, 6), (0, 3, 9), (0, 6, 6)],
                    [(10, 0, 0), (10, 6, 0), (10, 6, 6), (10, 3, 9), (10, 0, 6)]],
    "RoofSurface": [[(0, 0, 6), (10, 0, 6), (10, 3, 9), (0, 3, 9)],
                    [(10, 6, 6), (0, 6, 6), (0, 3, 9), (10, 3, 9)]],
}
HIP = {
    "GroundSurface": [[(20, 0, 0), (20, 8, 0), (30, 8, 0), (30, 0, 0)]],
    "WallSurface": [[(20, 0, 0), (30, 0, 0), (30, 0, 5), (20, 0, 5)],
                    [(30, 0, 0), (30, 8, 0), (30, 8, 5), (30, 0, 5)],
                    [(30, 8, 0), (20, 8, 0), (20, 8, 5), (30, 8, 5)],
                    [(20, 8, 0), (20, 0, 0), (20, 0, 5), (20, 8, 5)]],
    "RoofSurface": [[(20, 0, 5), (30, 0, 5), (27, 4, 8), (23, 4, 8)],
                    [(30, 0, 5), (30, 8, 5), (27, 4, 8)],
                    [(30, 8, 5), (20, 8, 5), (23, 4, 8), (27, 4, 8)],
                    [(20, 8, 5), (20, 0, 5), (23, 4, 8)]],
}
ATTRS = {
    "NL.IMBAG.Pand.0503100000000001": {"identificatie": "NL.IMBAG.Pand.0503100000000001",
                                        "oorspronkelijkbouwjaar": 1932, "status": "Pand in gebruik",
                                        "naam": "Café 't Hôfje"},
    "NL.IMBAG.Pand.0503100000000002": {"identificatie": "NL.IMBAG.Pand.0503100000000002",
                                        "oorspronkelijkbouwjaar": 1975, "status": "Pand in gebruik"},
}


def _solid(surfaces: dict[str, list], verts: list[list[int]]) -> dict:
    shell, values, sem = [], [], []
    for kind, polys in surfaces.items():
        sem.append({"type": kind})
        for poly in polys:
            ring = []
            for x, y, z in poly:
                ring.append(len(verts))
                verts.append([round((x + 0.0) / SCALE), round(y / SCALE), round((z + 0.5) / SCALE)])
            shell.append([ring])
            values.append(len(sem) - 1)
    return {"type": "Solid", "lod": "2.2", "boundaries": [shell], "semantics": {"surfaces": sem, "values": [values]}}


def _lod1(surfaces: dict[str, list], verts: list[list[int]]) -> dict:
    """A LOD1.2 block (the same ground, flat top at the eaves) so --lod has something to choose."""
    ground = surfaces["GroundSurface"][0]
    top = max(z for poly in surfaces["WallSurface"] for _, _, z in poly if z < 7)
    ring_b = [(x, y, 0) for x, y, _ in ground]
    ring_t = [(x, y, top) for x, y, _ in reversed(ground)]
    polys = [ring_b, ring_t]
    for (x1, y1, _), (x2, y2, _) in zip(ground, ground[1:] + ground[:1], strict=True):
        polys.append([(x2, y2, 0), (x1, y1, 0), (x1, y1, top), (x2, y2, top)])
    shell = []
    for poly in polys:
        ring = []
        for x, y, z in poly:
            ring.append(len(verts))
            verts.append([round(x / SCALE), round(y / SCALE), round((z + 0.5) / SCALE)])
        shell.append([ring])
    return {"type": "Solid", "lod": "1.2", "boundaries": [shell]}


def city_objects(verts: list[list[int]]) -> dict:
    objs = {}
    for (oid, attrs), shape in zip(ATTRS.items(), (GABLE, HIP), strict=True):
        objs[oid] = {"type": "Building", "attributes": attrs, "geometry": [_lod1(shape, verts), _solid(shape, verts)]}
    return objs


def write_city_json(path: Path) -> Path:
    verts: list[list[int]] = []
    objs = city_objects(verts)
    doc = {"type": "CityJSON", "version": "2.0",
           "transform": {"scale": [SCALE, SCALE, SCALE], "translate": [X0, Y0, Z0]},
           "metadata": {"referenceSystem": "https://www.opengis.net/def/crs/EPSG/0/7415"},
           "CityObjects": objs, "vertices": verts}
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return path


def write_city_jsonl(path: Path) -> Path:
    lines = [{"type": "CityJSON", "version": "2.0",
              "transform": {"scale": [SCALE, SCALE, SCALE], "translate": [X0, Y0, Z0]},
              "metadata": {"referenceSystem": "https://www.opengis.net/def/crs/EPSG/0/7415"},
              "CityObjects": {}, "vertices": []}]
    for oid, attrs in ATTRS.items():
        verts: list[list[int]] = []
        shape = GABLE if oid.endswith("1") else HIP
        lines.append({"type": "CityJSONFeature", "id": oid, "vertices": verts, "CityObjects": {
            oid: {"type": "Building", "attributes": attrs, "geometry": [_lod1(shape, verts), _solid(shape, verts)]}}})
    path.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n", encoding="utf-8")
    return path


def source_roofs() -> list[np.ndarray]:
    """Every source roof polygon, (n,3) in EPSG:28992 + NAP."""
    out = []
    for shape in (GABLE, HIP):
        for poly in shape["RoofSurface"]:
            out.append(np.array(poly, float) + [X0, Y0, Z0 + 0.5])
    return out


def source_surfaces() -> list[np.ndarray]:
    return [np.array(p, float) + [X0, Y0, Z0 + 0.5] for shape in (GABLE, HIP) for polys in shape.values()
            for p in polys]


# ------------------------------------------------------------------------------------ reader
def test_reader_model(tmp_path: Path) -> None:
    m = read_cityjson(write_city_json(tmp_path / "delft.city.json"), lod="2")
    assert m.crs.to_epsg() == 28992 and m.heights == "orthometric" and "Amsterdam" in (m.vertical_datum or "")
    assert [b.lod for b in m.buildings] == ["2.2", "2.2"]
    gable = m.buildings[0]
    assert len(gable.of_kind("RoofSurface")) == 2 and len(gable.of_kind("WallSurface")) == 4
    assert np.allclose(gable.of_kind("RoofSurface")[0].exterior[2], [X0 + 10, Y0 + 3, Z0 + 9.5])
    assert gable.attributes["naam"] == "Café 't Hôfje"
    m1 = read_cityjson(tmp_path / "delft.city.json", lod="1")
    assert [b.lod for b in m1.buildings] == ["1.2", "1.2"]
    ml = read_cityjson(write_city_jsonl(tmp_path / "delft.city.jsonl"))
    assert [b.id for b in ml.buildings] == list(ATTRS) and ml.crs.to_epsg() == 28992
    for a, b in zip(m.buildings, ml.buildings, strict=True):
        assert all(np.allclose(r1, r2) for s1, s2 in zip(a.surfaces, b.surfaces, strict=True)
                   for r1, r2 in zip(s1.rings, s2.rings, strict=True))


def test_choose_lod() -> None:
    assert choose_lod(["1.2", "2.2", "2.1"], None) == "2.2"
    assert choose_lod(["1.2", "2.2", "2.1"], "2") == "2.2"
    assert choose_lod(["1.2", "2.2"], "2.1") == "1.2"
    assert choose_lod(["1.2", "1.3"], "2") == "1.3"
    assert choose_lod(["2.2"], "1") is None


def test_polygon_with_hole_triangulates_on_its_plane() -> None:
    outer = np.array([[0, 0, 0], [10, 0, 5], [10, 10, 5], [0, 10, 0]], float)
    hole = np.array([[4, 4, 2], [4, 6, 2], [6, 6, 3], [6, 4, 3]], float)
    verts, tri, n = triangulate_polygon([outer, hole])
    a, b, c = verts[tri[:, 0]], verts[tri[:, 1]], verts[tri[:, 2]]
    area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    slope = np.sqrt(1 + 0.5 ** 2)
    assert area.sum() == pytest.approx((100 - 4) * slope)
    assert np.all(np.cross(b - a, c - a) @ n > 0)


# ------------------------------------------------------------------------------------ tiles
def _tile_triangles_28992(out: Path) -> tuple[list[np.ndarray], list[dict]]:
    ts = json.loads((out / "tileset.json").read_text())
    m = np.array(ts["root"]["transform"]).reshape(4, 4).T
    to_rd = Transformer.from_crs(4326, 28992, always_xy=True)
    tris, tables = [], []

    def walk(t: dict) -> None:
        if not t.get("children"):
            glb = read_glb((out / t["content"]["uri"]).read_bytes())
            enu = frames.gltf_to_enu(glb.attribute("POSITION").astype(np.float64))
            ecef = enu @ m[:3, :3].T + m[:3, 3]
            llh = frames.ecef_to_lonlat_ellipsoidal(ecef)
            h = llh[:, 2] - frames.geoid_undulation(llh[:, 0], llh[:, 1])
            x, y = to_rd.transform(llh[:, 0], llh[:, 1])
            xyz = np.column_stack([x, y, h])
            tris.append(xyz[glb.indices().reshape(-1, 3)])
            tables.append(glb.property_table())
        for c in t.get("children", []):
            walk(c)

    walk(ts["root"])
    return tris, tables


def _on_surface(tri: np.ndarray, surfaces: list[np.ndarray], tol: float) -> int:
    """Index of the source surface whose plane holds all 3 vertices (and polygon holds the centroid)."""
    c = tri.mean(axis=0)
    for k, s in enumerate(surfaces):
        _, _, n = triangulate_polygon([s])
        if np.all(np.abs((tri - s[0]) @ n) < tol):
            # centroid inside the polygon, in the plane's 2D frame
            helper = np.array([1.0, 0, 0]) if abs(n[0]) < 0.9 else np.array([0, 1.0, 0])
            u = np.cross(helper, n)
            u /= np.linalg.norm(u)
            v = np.cross(n, u)
            poly = shapely.Polygon(np.column_stack([(s - s[0]) @ u, (s - s[0]) @ v]))
            if poly.buffer(tol).contains(shapely.Point((c - s[0]) @ u, (c - s[0]) @ v)):
                return k
    return -1


@pytest.mark.parametrize("name", ["delft.city.json", "delft.city.jsonl"])
def test_lod2_tiles_carry_the_real_roofs_within_5cm(tmp_path: Path, name: str) -> None:
    src = (write_city_json if name.endswith(".json") else write_city_jsonl)(tmp_path / name)
    out = tmp_path / "tiles"
    result = build_buildings(src, out, BuildingOptions(lod=2, workers=1))
    assert result.report.counts["written"] == 2 and result.report.counts["rejected"] == 0
    tris, tables = _tile_triangles_28992(out)
    ids = [i for t in tables for i in t["id"]]
    assert sorted(ids) == sorted(ATTRS)
    t0 = next(t for t in tables if "Café 't Hôfje" in list(t.get("naam", [])))
    assert set(t0) >= {"id", "identificatie", "oorspronkelijkbouwjaar", "status", "naam", "height", "roof_type"}
    all_tris = np.concatenate(tris)
    roofs = source_roofs()
    surfaces = source_surfaces()
    roof_area = np.zeros(len(roofs))
    for tri in all_tris:
        k = _on_surface(tri, surfaces, 0.05)
        assert k >= 0, f"triangle {tri.tolist()} is on no source surface (5 cm)"
        kr = next((i for i, r in enumerate(roofs) if np.array_equal(r, surfaces[k])), None)
        if kr is not None:
            a, b, c = tri
            roof_area[kr] += 0.5 * np.linalg.norm(np.cross(b - a, c - a))
    # every source roof is covered by its triangles (area to 0.5 %: the CRS round trip is exact)
    for r, area in zip(roofs, roof_area, strict=True):
        _, tri_src, _ = triangulate_polygon([r])
        a, b, c = r[tri_src[:, 0]], r[tri_src[:, 1]], r[tri_src[:, 2]]
        expected = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1).sum()
        assert area == pytest.approx(expected, rel=5e-3)
    ts = json.loads((out / "tileset.json").read_text())
    assert ts["extras"]["heights"]["geoid"] == "egm96"
    report = json.loads((out / "report.json").read_text())
    assert report["output"]["heights"]["geoid"] == "egm96"


def test_lod_pick_keeps_the_asked_lod(tmp_path: Path) -> None:
    """--lod 1.2: the LOD1.2 blocks of the file are drawn (flat tops at the eaves), not the roofs."""
    src = write_city_json(tmp_path / "delft.city.json")
    out = tmp_path / "tiles"
    result = build_buildings(src, out, BuildingOptions(lod=1, lod_pick="1.2", workers=1))
    assert result.report.counts["written"] == 2
    assert result.report.output["lods"] == ["1.2"]
    tris, _ = _tile_triangles_28992(out)
    z = np.concatenate(tris)[:, :, 2]
    assert z.max() == pytest.approx(Z0 + 0.5 + 6.0, abs=0.01)  # the gable's eaves, no ridge at 9 m


def test_cli_lod_values(tmp_path: Path) -> None:
    import subprocess
    import sys

    src = write_city_jsonl(tmp_path / "delft.city.jsonl")
    onemap = Path(sys.executable).parent / "onemap"
    r = subprocess.run([str(onemap), "tiles", "buildings", str(src), "--out", str(tmp_path / "o"), "--lod", "2.2"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    bad = subprocess.run([str(onemap), "tiles", "buildings", str(src), "--out", str(tmp_path / "o2"), "--lod", "3"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "--lod" in bad.stderr
