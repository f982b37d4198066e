"""The malformed-delivery corpus: every `tiles` and `load` command fed broken deliveries, run as
the user runs it (the `onemap` CLI in a subprocess).

Each case ends in either a clear error (exit 1, the file named, no traceback) or an accounted
rejection, checked against what was really written: building ids read back from the tiles'
glTF property tables, rows read back from the PostGIS table (never input minus rejected).
Files are built in code so every defect is readable here.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import laspy
import numpy as np
import psycopg
import pytest
import rasterio
import shapely
from pyproj import CRS
from rasterio.transform import from_origin

from tests.gis_helpers import libpq
from tiles.gltf_read import read_glb

REPO = Path(__file__).resolve().parents[1]
ONEMAP = REPO / ".venv" / "bin" / "onemap"
X0, Y0 = 536_000.0, 3_644_000.0  # EPSG:4548, Jiefang Street
PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d4944415478da63f8"
                    "cfc0f01f0005000201a5f6b2e60000000049454e44ae426082")


def onemap(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run([str(ONEMAP), *args], capture_output=True, text=True, timeout=timeout, env=env,
                          check=False)


def box(i: int, size: float = 10.0) -> shapely.Polygon:
    x, y = X0 + 30.0 * i, Y0
    return shapely.box(x, y, x + size, y + size)


def good_rows(n: int = 3) -> list[dict]:
    return [{"id": f"B{i}", "name": f"测试楼{i}", "height": 12.0, "floors": 4.0, "geometry": box(i)}
            for i in range(1, n + 1)]


def write(path: Path, rows: list[dict], crs: str | None = "EPSG:4548", **kw: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    gdf = gpd.GeoDataFrame(rows, geometry="geometry", crs=crs)
    gdf.to_file(path, **kw)
    return path


def tile_ids(out: Path) -> list[str]:
    """Building ids read back from the leaves' glTF property tables."""
    ids: list[str] = []

    def walk(tile: dict) -> None:
        kids = tile.get("children") or []
        if not kids and tile.get("content"):
            glb = read_glb((out / tile["content"]["uri"]).read_bytes())
            ids.extend(str(v) for v in glb.property_table()["id"])
        for k in kids:
            walk(k)

    walk(json.loads((out / "tileset.json").read_text())["root"])
    return ids


def text_of(res: subprocess.CompletedProcess[str]) -> str:
    return " ".join((res.stdout + res.stderr).split())


def assert_clear_error(res: subprocess.CompletedProcess[str], *needles: str) -> None:
    text = text_of(res)
    assert "Traceback" not in text, text[-3000:]
    assert res.returncode == 1, (res.returncode, text[-3000:])
    for needle in needles:
        assert needle in text, (needle, text[-3000:])


@dataclass
class Case:
    """A tiles buildings case: ``build(dir) -> src``; an error (needles) or accounted outcome."""

    name: str
    build: Callable[[Path], Path]
    error: tuple[str, ...] | None = None
    rejected: dict[str, str] = field(default_factory=dict)  # id -> code
    written: set[str] | None = None  # ids read back from the tiles
    args: tuple[str, ...] = ()


# ------------------------------------------------------------------------------------ builders
def _empty(d: Path) -> Path:
    (d / "empty.gpkg").write_bytes(b"")
    return d / "empty.gpkg"


def _truncated_gpkg(d: Path) -> Path:
    src = write(d / "full.gpkg", good_rows())
    cut = d / "truncated.gpkg"
    cut.write_bytes(src.read_bytes()[:3000])
    return cut


def _truncated_geojson(d: Path) -> Path:
    src = write(d / "full.geojson", good_rows())
    cut = d / "truncated.geojson"
    cut.write_bytes(src.read_bytes()[: len(src.read_bytes()) // 2])
    return cut


def _shp_without(ext: str) -> Callable[[Path], Path]:
    def build(d: Path) -> Path:
        shp = write(d / "b.shp", good_rows(), encoding="UTF-8")
        shp.with_suffix(ext).unlink()
        return shp
    return build


def _png_as_shp(d: Path) -> Path:
    shp = write(d / "b.shp", good_rows(), encoding="UTF-8")
    shp.write_bytes(PNG)
    return shp


def _with(*extra: dict, crs: str | None = "EPSG:4548", name: str = "b.gpkg") -> Callable[[Path], Path]:
    def build(d: Path) -> Path:
        return write(d / name, good_rows() + list(extra), crs=crs)
    return build


def _bad(fid: str, geometry: object, **attrs: object) -> dict:
    return {"id": fid, "name": "x", "height": attrs.get("height", 12.0), "floors": attrs.get("floors", 4.0),
            "geometry": geometry}


def _geojson_text(d: Path, name: str, features: list[dict], crs_member: dict | None = None) -> Path:
    doc: dict = {"type": "FeatureCollection", "features": features}
    if crs_member:
        doc["crs"] = crs_member
    path = d / name
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return path


def _feature(fid: str, ring: list[list[float]], **props: object) -> dict:
    return {"type": "Feature", "properties": {"id": fid, "height": 12.0, **props},
            "geometry": {"type": "Polygon", "coordinates": [ring]}}


def _lonlat_ring(lon: float, lat: float, d: float = 0.0002) -> list[list[float]]:
    return [[lon, lat], [lon + d, lat], [lon + d, lat + d], [lon, lat + d], [lon, lat]]


def _swapped(d: Path) -> Path:
    feats = [_feature(f"B{i}", _lonlat_ring(117.39 + 0.001 * i, 32.93)) for i in (1, 2, 3)]
    feats.append(_feature("SWAP", [[lat, lon] for lon, lat in _lonlat_ring(117.40, 32.93)]))
    return _geojson_text(d, "swapped.geojson", feats)


def _nan_in_geojson(value: str, unclosed: bool = False) -> Callable[[Path], Path]:
    def build(d: Path) -> Path:
        feats = [_feature(f"B{i}", _lonlat_ring(117.39 + 0.001 * i, 32.93)) for i in (1, 2, 3)]
        text = json.dumps({"type": "FeatureCollection", "features": feats})
        # a middle vertex (the ring stays closed); UNCLOSED: the first vertex, so GEOS refuses the ring
        needle = "117.4," if unclosed else "117.40020000000001, 32.93]"
        bad = json.dumps(_feature("BAD", _lonlat_ring(117.40, 32.93)))
        bad = bad.replace(needle, f"{value}," if unclosed else f"{value}, 32.93]", 1)
        path = d / "bad.geojson"
        path.write_text(text[:-2] + ", " + bad + "]}", encoding="utf-8")
        return path
    return build


def _legacy_crs(d: Path) -> Path:
    feats = [_feature(f"B{i}", [[x, y] for x, y in box(i).exterior.coords]) for i in (1, 2, 3)]
    return _geojson_text(d, "legacy.geojson", feats,
                         {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::4548"}})


def _all_null_geometry(d: Path) -> Path:
    rows = [{"id": f"B{i}", "height": 10.0, "geometry": None} for i in (1, 2)]
    return write(d / "nulls.gpkg", rows)


def _all_points(d: Path) -> Path:
    rows = [{"id": f"P{i}", "height": 10.0, "geometry": shapely.Point(X0 + i, Y0)} for i in (1, 2)]
    return write(d / "points.gpkg", rows)


def _multilayer(d: Path) -> Path:
    path = write(d / "two.gpkg", good_rows(), layer="houses")
    write(path, good_rows(1), layer="sheds", mode="a")
    return path


def _no_crs_csv(d: Path) -> Path:
    path = d / "nocrs.csv"
    path.write_text("id,height,wkt\n" + "\n".join(f'B{i},12,"{box(i).wkt}"' for i in (1, 2, 3)) + "\n",
                    encoding="utf-8")
    return path


def _latin1_shp(d: Path) -> Path:
    rows = good_rows()
    for r, n in zip(rows, ("Straße", "Café", "Ñandú"), strict=True):
        r["name"] = n
    shp = write(d / "latin.shp", rows, encoding="ISO-8859-1")
    shp.with_suffix(".cpg").unlink()
    return shp


def _spaces_and_chinese(d: Path) -> Path:
    return write(d / "交付 数据" / "建筑 物.gpkg", good_rows())


def _no_id_field(d: Path) -> Path:
    rows = [{k: v for k, v in r.items() if k != "id"} for r in good_rows()]
    return write(d / "noid.gpkg", rows)


def _huge(d: Path) -> Path:
    t = np.linspace(0, 2 * np.pi, 200_000, endpoint=False)
    ring = np.column_stack([X0 + 200 + 20 * np.cos(t), Y0 + 20 * np.sin(t)])
    return write(d / "huge.gpkg", [*good_rows(), _bad("HUGE", shapely.Polygon(ring))])


BOWTIE = shapely.Polygon([(X0 + 200, Y0), (X0 + 210, Y0 + 10), (X0 + 210, Y0), (X0 + 200, Y0 + 10)])
HOLE_OUTSIDE = shapely.Polygon(box(8).exterior.coords, [list(box(9, 3).exterior.coords)])
SLIVER = shapely.box(X0 + 300, Y0, X0 + 310, Y0 + 0.01)
GC = shapely.GeometryCollection([box(7), shapely.Point(X0, Y0)])
Z_POLY = shapely.Polygon([(x, y, 20.0) for x, y in box(6).exterior.coords])
FAR = shapely.box(1e20, 1e20, 1e20 + 10, 1e20 + 10)
W3 = {"B1", "B2", "B3"}

BUILDING_CASES = [
    Case("empty file", _empty, error=("empty.gpkg", "empty")),
    Case("truncated GeoPackage", _truncated_gpkg, error=("truncated.gpkg",)),
    Case("truncated GeoJSON", _truncated_geojson, error=("truncated.geojson",)),
    Case("Shapefile without .dbf", _shp_without(".dbf"), error=("b.shp", "b.dbf")),
    Case("Shapefile without .shx", _shp_without(".shx"), error=("b.shp", "b.shx")),
    Case("Shapefile without .prj", _shp_without(".prj"), error=("b.shp", "--src-crs")),
    Case("PNG renamed .shp", _png_as_shp, error=("b.shp", "not a Shapefile")),
    Case("a point among polygons", _with(_bad("PT", shapely.Point(X0, Y0))), rejected={"PT": "wrong_geometry_type"},
         written=W3),
    Case("every feature a point", _all_points, error=("points.gpkg", "wrong_geometry_type")),
    Case("GeometryCollection", _with(_bad("GC", GC)), written=W3 | {"GC"}),
    Case("Z values", _with(_bad("Z", Z_POLY)), written=W3 | {"Z"}),
    Case("self-intersection", _with(_bad("BOW", BOWTIE)), written=W3 | {"BOW"}),
    Case("hole outside its shell", _with(_bad("HOLE", HOLE_OUTSIDE)), written=W3 | {"HOLE"}),
    Case("sliver", _with(_bad("SLIVER", SLIVER)), rejected={"SLIVER": "zero_area"}, written=W3),
    Case("200,000-vertex polygon", _huge, written=W3 | {"HUGE"}),
    Case("NaN coordinate", _nan_in_geojson("NaN"), rejected={"BAD": "invalid_coordinate"}, written=W3),
    Case("NaN first vertex (unclosed ring)", _nan_in_geojson("NaN", unclosed=True),
         rejected={"BAD": "empty_geometry"}, written=W3),
    Case("Infinity coordinate", _nan_in_geojson("Infinity"), rejected={"BAD": "invalid_coordinate"}, written=W3),
    Case("out-of-domain coordinate", _with(_bad("FAR", FAR)), rejected={"FAR": "out_of_domain"}, written=W3),
    Case("swapped lat/lon", _swapped, rejected={"SWAP": "swapped_axes"}, written=W3),
    Case("no CRS", _no_crs_csv, error=("nocrs.csv", "--src-crs")),
    Case("no CRS, --src-crs given", _no_crs_csv, written=W3, args=("--src-crs", "EPSG:4548")),
    Case("duplicate id", _with(_bad("B1", box(5))), rejected={"B1": "duplicate_id"}, written=W3),
    Case("null id", _with(_bad(None, box(5))), written=W3),
    Case("absurd height", _with(_bad("TALL", box(5), height=9000.0)), rejected={"TALL": "absurd_height"}, written=W3),
    Case("height with unit and decimal comma", _with(_bad("TXT", box(5), height="12,5 m")), written=W3 | {"TXT"}),
    Case("unparsable height", _with(_bad("ABC", box(5), height="abc")), rejected={"ABC": "unparsable_value"},
         written=W3),
    Case("fractional floors", _with({"id": "F35", "floors": 3.5, "geometry": box(5)}), written=W3 | {"F35"}),
    Case("all-null geometry", _all_null_geometry, error=("nulls.gpkg", "geometry")),
    Case("legacy GeoJSON crs member", _legacy_crs, written=W3),
    Case("two layers, no --layer", _multilayer, error=("two.gpkg", "--layer")),
    Case("two layers, --layer", _multilayer, written=W3, args=("--layer", "houses")),
    Case("Latin-1 bytes, no .cpg", _latin1_shp, error=("latin.shp", "--encoding")),
    Case("Latin-1 bytes, --encoding", _latin1_shp, written=W3, args=("--encoding", "ISO-8859-1")),
    Case("path with spaces and Chinese", _spaces_and_chinese, written=W3),
    Case("no id field", _no_id_field, error=("noid.gpkg", "--id-field")),
]


@pytest.mark.parametrize("case", BUILDING_CASES, ids=[c.name for c in BUILDING_CASES])
def test_tiles_buildings(case: Case, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    src = case.build(tmp_path / "in")
    out = tmp_path / "out"
    res = onemap("tiles", "buildings", str(src), "--out", str(out), *case.args)
    if case.error is not None:
        assert_clear_error(res, *case.error)
        assert not (out / "tileset.json").exists()
        return
    text = text_of(res)
    assert res.returncode == 0 and "Traceback" not in text, text[-3000:]
    report = json.loads((out / "report.json").read_text())
    got = {r["id"]: r["code"] for r in report["rejected"]}
    for fid, code in case.rejected.items():
        assert got.get(fid) == code, (fid, got)
    ids = tile_ids(out)
    assert len(ids) == len(set(ids))
    assert set(ids) == case.written, sorted(set(ids) ^ (case.written or set()))
    # the report accounts for every input feature and agrees with the tiles
    assert report["counts"]["written"] == len(ids)
    assert report["counts"]["input"] == report["counts"]["written"] + report["counts"]["rejected"]


# ------------------------------------------------------------------------------------ roads, trees, furniture
def _roads(d: Path, extra: list[dict]) -> Path:
    rows = [{"id": "R1", "class": "primary", "width": 20.0,
             "geometry": shapely.LineString([(X0, Y0), (X0 + 200, Y0)])},
            {"id": "R2", "class": "residential", "width": 6.0,
             "geometry": shapely.LineString([(X0, Y0 + 100), (X0 + 200, Y0 + 100)])}]
    return write(d / "roads.gpkg", rows + extra)


def test_tiles_roads_nan_vertex_is_rejected_not_lost(tmp_path: Path) -> None:
    feats = [{"type": "Feature", "properties": {"id": "R1", "class": "primary", "width": 8},
              "geometry": {"type": "LineString", "coordinates": [[117.39, 32.93], [117.392, 32.93]]}},
             {"type": "Feature", "properties": {"id": "RNAN", "class": "primary", "width": 8},
              "geometry": {"type": "LineString", "coordinates": [[117.39, 32.931], [117.392, 32.931]]}}]
    path = tmp_path / "roads.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}).replace("32.931]]", "NaN]]"),
                    encoding="utf-8")
    res = onemap("tiles", "roads", str(path), "--out", str(tmp_path / "out"))
    assert res.returncode == 0 and "Traceback" not in text_of(res), text_of(res)[-3000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert {r["id"]: r["code"] for r in report["rejected"]} == {"RNAN": "invalid_coordinate"}
    assert report["counts"]["written"] == 1


def test_tiles_roads_covered_road_is_rejected(tmp_path: Path) -> None:
    inner = {"id": "UNDER", "class": "residential", "width": 4.0,
             "geometry": shapely.LineString([(X0 + 50, Y0), (X0 + 150, Y0)])}
    res = onemap("tiles", "roads", str(_roads(tmp_path, [inner])), "--out", str(tmp_path / "out"))
    assert res.returncode == 0 and "Traceback" not in text_of(res), text_of(res)[-3000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert {r["id"]: r["code"] for r in report["rejected"]} == {"UNDER": "covered"}
    assert report["counts"]["written"] == 2


def test_tiles_roads_empty_layer(tmp_path: Path) -> None:
    path = write(tmp_path / "roads.gpkg", [{"id": "R1", "geometry": shapely.LineString([(X0, Y0), (X0 + 1, Y0)])}])
    empty = tmp_path / "empty_roads.gpkg"
    gpd.read_file(path).iloc[0:0].to_file(empty)
    assert_clear_error(onemap("tiles", "roads", str(empty), "--out", str(tmp_path / "out")), "empty_roads.gpkg")


def _points(path: Path, rows: list[dict]) -> Path:
    return write(path, [{**r, "geometry": shapely.Point(X0 + 5 * i, Y0)} for i, r in enumerate(rows)])


def test_tiles_trees_absurd_height_and_wrong_geometry(tmp_path: Path) -> None:
    rows = [{"id": "T1", "height": 8.0, "geometry": shapely.Point(X0, Y0)},
            {"id": "T2", "height": 900.0, "geometry": shapely.Point(X0 + 5, Y0)},
            {"id": "T3", "height": 5.0, "geometry": box(2)}]
    path = write(tmp_path / "trees.gpkg", rows)
    res = onemap("tiles", "trees", str(path), "--out", str(tmp_path / "out"))
    assert res.returncode == 0 and "Traceback" not in text_of(res), text_of(res)[-3000:]
    report = json.loads((tmp_path / "out" / "trees" / "report.json").read_text()) \
        if (tmp_path / "out" / "trees" / "report.json").exists() else \
        json.loads((tmp_path / "out" / "report.json").read_text())
    layers = report if isinstance(report, list) else report.get("layers", [report])
    trees = next(r for r in layers if r["layer"] == "trees")
    assert {r["id"]: r["code"] for r in trees["rejected"]} == {"T2": "absurd_height", "T3": "wrong_geometry_type"}


def test_tiles_trees_latin1_csv(tmp_path: Path) -> None:
    path = tmp_path / "trees.csv"
    path.write_bytes("id,species,x,y,height\nT1,Platane à feuilles,536000,3644000,8\n".encode("latin-1"))
    assert_clear_error(onemap("tiles", "trees", str(path), "--out", str(tmp_path / "out"), "--src-crs",
                              "EPSG:4548"), "trees.csv", "--encoding")


def test_tiles_furniture_unknown_type(tmp_path: Path) -> None:
    path = _points(tmp_path / "furniture.gpkg", [{"id": "F1", "type": "bench"}, {"id": "F2", "type": "spaceship"}])
    res = onemap("tiles", "furniture", str(path), "--out", str(tmp_path / "out"))
    assert res.returncode == 0 and "Traceback" not in text_of(res), text_of(res)[-3000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert {r["id"]: r["code"] for r in report["rejected"]} == {"F2": "unknown_type"}


def test_tiles_furniture_missing_type_field_names_a_real_option(tmp_path: Path) -> None:
    path = _points(tmp_path / "furniture.gpkg", [{"id": "F1", "kind": "bench"}])
    res = onemap("tiles", "furniture", str(path), "--out", str(tmp_path / "out"))
    assert_clear_error(res, "furniture.gpkg", "'type'", "--mapping")
    assert "--type-field" not in text_of(res)


# ------------------------------------------------------------------------------------ DEM and LAS
def _dem(path: Path, data: np.ndarray, crs: str = "EPSG:4548", nodata: float = -9999.0,
         x0: float = X0 - 100, y0: float = Y0 + 100, res: float = 2.0) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0], count=1,
                       dtype="float32", crs=crs, transform=from_origin(x0, y0, res, res), nodata=nodata) as ds:
        ds.write(data.astype("float32"), 1)
    return path


def test_dem_all_nodata(tmp_path: Path) -> None:
    dem = _dem(tmp_path / "dem.tif", np.full((50, 50), -9999.0))
    res = onemap("tiles", "terrain", str(dem), "--out", str(tmp_path / "out"))
    assert_clear_error(res, "dem.tif")


def test_dem_one_by_one(tmp_path: Path) -> None:
    dem = _dem(tmp_path / "dem1.tif", np.array([[20.0]]))
    res = onemap("tiles", "terrain", str(dem), "--out", str(tmp_path / "out"))
    text = text_of(res)
    assert "Traceback" not in text and res.returncode in (0, 1), text[-3000:]
    if res.returncode == 1:
        assert "dem1.tif" in text


def test_buildings_on_a_dem_in_another_crs(tmp_path: Path) -> None:
    t = CRS("EPSG:4548")
    from pyproj import Transformer

    x, y = Transformer.from_crs(t, "EPSG:32650", always_xy=True).transform(X0 - 100, Y0 + 100)
    dem = _dem(tmp_path / "dem_utm.tif", np.full((200, 200), 20.0), crs="EPSG:32650", x0=x, y0=y)
    src = write(tmp_path / "b.gpkg", good_rows())
    res = onemap("tiles", "buildings", str(src), "--out", str(tmp_path / "out"), "--dem", str(dem))
    assert res.returncode == 0 and "Traceback" not in text_of(res), text_of(res)[-3000:]
    assert set(tile_ids(tmp_path / "out")) == W3


def _las(path: Path, n: int, crs: bool = True) -> Path:
    header = laspy.LasHeader(point_format=7, version="1.4")
    header.scales = np.array([0.001, 0.001, 0.001])
    header.offsets = np.array([X0, Y0, 0.0])
    if crs:
        header.add_crs(CRS.from_epsg(4548))
    las = laspy.LasData(header)
    rng = np.random.default_rng(1)
    las.x = X0 + rng.uniform(0, 50, n)
    las.y = Y0 + rng.uniform(0, 50, n)
    las.z = rng.uniform(20, 30, n)
    las.write(path)
    return path


def test_las_without_points(tmp_path: Path) -> None:
    res = onemap("tiles", "pointcloud", str(_las(tmp_path / "none.las", 0)), "--out", str(tmp_path / "out"))
    assert_clear_error(res, "none.las")


def test_las_without_crs(tmp_path: Path) -> None:
    res = onemap("tiles", "pointcloud", str(_las(tmp_path / "nocrs.las", 500, crs=False)), "--out",
                 str(tmp_path / "out"))
    assert_clear_error(res, "nocrs.las", "--src-crs")


def test_truncated_las(tmp_path: Path) -> None:
    full = _las(tmp_path / "full.las", 2000)
    cut = tmp_path / "cut.las"
    cut.write_bytes(full.read_bytes()[: len(full.read_bytes()) // 2])
    res = onemap("tiles", "pointcloud", str(cut), "--out", str(tmp_path / "out"))
    assert_clear_error(res, "cut.las")


# ------------------------------------------------------------------------------------ load
@pytest.fixture()
def db(use_database: str) -> str:
    return libpq(use_database)


def _rows(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(url) as c:
        return c.execute(sql).fetchall()


def test_load_buildings_accounts_against_the_table(db: str, tmp_path: Path) -> None:
    src = write(tmp_path / "b.gpkg", [*good_rows(), _bad("TALL", box(5), height=9000.0),
                                      {"id": "F35", "floors": 3.5, "geometry": box(6)},
                                      _bad("BOW", BOWTIE), _bad("SLIVER", SLIVER)])
    res = onemap("load", "buildings", str(src), "--report", str(tmp_path / "r.json"))
    assert res.returncode == 0 and "Traceback" not in text_of(res), text_of(res)[-3000:]
    in_table = {r[0] for r in _rows(db, "SELECT id FROM buildings")}
    assert in_table >= W3 | {"F35", "BOW"} and not in_table & {"TALL", "SLIVER"}
    report = json.loads((tmp_path / "r.json").read_text())["layers"][0]
    assert {r["feature_id"]: r["reason"] for r in report["rejects"]} == {"TALL": "absurd_height",
                                                                          "SLIVER": "zero_area"}
    assert report["loaded"] == len(in_table & {r["id"] for r in good_rows()} | in_table & {"F35", "BOW"})


@pytest.mark.parametrize(("name", "build", "needles", "fix"), [
    ("no .dbf", _shp_without(".dbf"), ("b.shp", "b.dbf"), None),
    ("no CRS", _no_crs_csv, ("nocrs.csv", "--src-crs"), ("--src-crs", "EPSG:4548")),
    ("two layers", _multilayer, ("two.gpkg", "--layer"), ("--layer", "houses")),
    ("Latin-1", _latin1_shp, ("latin.shp", "--encoding"), ("--encoding", "ISO-8859-1")),
    ("all points", _all_points, ("points.gpkg", "--allow-empty"), None),
])
def test_load_buildings_errors(db: str, tmp_path: Path, name: str, build: Callable[[Path], Path],
                               needles: tuple[str, ...], fix: tuple[str, str] | None) -> None:
    (tmp_path / "in").mkdir()
    src = build(tmp_path / "in")
    before = _rows(db, "SELECT count(*) FROM buildings")[0][0]
    assert_clear_error(onemap("load", "buildings", str(src), "--report", str(tmp_path / "r.json")), *needles)
    assert _rows(db, "SELECT count(*) FROM buildings")[0][0] == before
    if fix:
        res = onemap("load", "buildings", str(src), *fix, "--report", str(tmp_path / "r.json"))
        assert res.returncode == 0, text_of(res)[-3000:]
        assert {r[0] for r in _rows(db, "SELECT id FROM buildings")} >= W3


EVENT_HEADER = "id,category,priority,source,x,y,status,reported_at"


def _events(path: Path, lines: list[str]) -> Path:
    path.write_text(EVENT_HEADER + "\n" + "".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_load_events_header_only_is_refused(db: str, tmp_path: Path) -> None:
    cat = _rows(db, "SELECT code FROM event_category ORDER BY code LIMIT 1")[0][0]
    ok = _events(tmp_path / "events.csv", [f"E1,{cat},A,resident,{X0 + 5},{Y0 + 5},reported,2026-01-02T08:00:00"])
    assert onemap("load", "events", str(ok)).returncode == 0
    empty = _events(tmp_path / "header_only.csv", [])
    assert_clear_error(onemap("load", "events", str(empty)), "header_only.csv", "--allow-empty")
    assert _rows(db, "SELECT id FROM events") == [("E1",)]
    assert _rows(db, "SELECT count(*) FROM event_status_history")[0][0] >= 1
    res = onemap("load", "events", str(empty), "--allow-empty")
    assert res.returncode == 0, text_of(res)[-2000:]
    assert _rows(db, "SELECT count(*) FROM events")[0][0] == 0


def test_load_events_bad_rows_are_accounted(db: str, tmp_path: Path) -> None:
    cat = _rows(db, "SELECT code FROM event_category ORDER BY code LIMIT 1")[0][0]
    path = _events(tmp_path / "events.csv", [
        f"E1,{cat},A,resident,{X0 + 5},{Y0 + 5},reported,2026-01-02T08:00:00",
        f"E2,{cat},A,resident,{X0 + 5},{Y0 + 5},reported,yesterday",
        f"E3,no_such_category,A,resident,{X0 + 5},{Y0 + 5},reported,2026-01-02T08:00:00",
        f"E4,{cat},A,resident,NaN,{Y0 + 5},reported,2026-01-02T08:00:00",
    ])
    res = onemap("load", "events", str(path), "--report", str(tmp_path / "r.json"))
    assert res.returncode == 0 and "Traceback" not in text_of(res), text_of(res)[-3000:]
    report = json.loads((tmp_path / "r.json").read_text())["layers"][0]
    got = {r["feature_id"]: r["reason"] for r in report["rejects"]}
    assert got["E2"] == "unparsable_value" and got["E3"] == "unknown_value" and "E4" in got
    assert {r[0] for r in _rows(db, "SELECT id FROM events")} == {"E1"} and report["loaded"] == 1


def test_load_events_latin1_bytes(db: str, tmp_path: Path) -> None:
    path = tmp_path / "events_latin.csv"
    path.write_bytes((EVENT_HEADER + ",description\nE1,x,A,resident,1,1,reported,2026-01-02T08:00:00,"
                      "Straße café\n").encode("latin-1"))
    assert_clear_error(onemap("load", "events", str(path)), "events_latin.csv", "--encoding")


def test_load_surveys_and_care_refused_or_named(db: str, tmp_path: Path) -> None:
    """Civil-affairs loads: a header-only survey delivery is refused (--allow-empty named), a care
    delivery without its category field names the file and the field; nothing is written."""
    surveys = tmp_path / "surveys_empty.csv"
    surveys.write_text("community_id,period,topic,respondents,satisfied\n", encoding="utf-8")
    assert_clear_error(onemap("load", "surveys", str(surveys)), "surveys_empty.csv", "--allow-empty")
    care = tmp_path / "care_households.csv"
    care.write_text("id,building_id,interval_days\nH00001,B1,30\n", encoding="utf-8")
    assert_clear_error(onemap("load", "care", str(care)), "care_households.csv", "category")
    assert _rows(db, "SELECT count(*) FROM restricted.care_households")[0][0] == 0


# ------------------------------------------------------------------------------------ one delivery layer
def test_dirty_delivery_same_ids_in_tiles_and_postgis(sample_dir: Path, conn: psycopg.Connection,
                                                      tmp_path: Path) -> None:
    """The sample's dirty buildings: the ids in the 3D tiles (read back from the glTF) are exactly
    the ids loaded into PostGIS (read back from the table): one reader, one set of rules."""
    from gis.loaders.io import Mapping
    from gis.loaders.reference import load_buildings
    from pipelines.buildings import BuildingOptions, build_buildings

    clean, dirty = sample_dir / "clean", sample_dir / "dirty"
    boundary = clean / "boundary.gpkg"
    src = dirty / "buildings.gpkg"
    out = tmp_path / "b"
    tiles_report = build_buildings(src, out, BuildingOptions(boundary=boundary)).report
    in_tiles = set(tile_ids(out))
    delivered = {str(i) for i in gpd.read_file(src, columns=["id"])["id"].dropna()}
    load_report = load_buildings(conn, src, Mapping(), boundary=boundary)
    in_table = {r[0] for r in conn.execute("SELECT id FROM buildings")} & delivered
    assert tiles_report.rejected_by_code() == load_report.rejected_by_code()
    assert in_tiles == in_table
    assert len(in_tiles) == tiles_report.counts["written"] == load_report.loaded


@pytest.mark.parametrize("command", ["roads", "cameras", "checkpoints", "geofences", "communities", "grid"])
def test_load_vector_commands_refuse_a_png(db: str, tmp_path: Path, command: str) -> None:
    path = tmp_path / "图层 数据.gpkg"
    path.write_bytes(PNG)
    assert_clear_error(onemap("load", command, str(path)), "图层 数据.gpkg")


@pytest.mark.parametrize(("command", "header"), [
    ("population", "person_id,building_id,birth_year,residence"),
    ("workers", "id,name,kind"),
    ("gps", "device_id,t,lon,lat"),
])
def test_load_table_commands_refuse_to_empty_a_table(db: str, tmp_path: Path, command: str, header: str) -> None:
    path = tmp_path / f"{command}.csv"
    path.write_text(header + "\n", encoding="utf-8")
    args = ("--replace",) if command == "gps" else ()
    assert_clear_error(onemap("load", command, str(path), *args), f"{command}.csv", "--allow-empty")
