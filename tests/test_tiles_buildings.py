"""Buildings pipeline end to end on small hand-made inputs (pipelines/buildings.py and friends).

Inputs are built here: footprints near Jiefang Street delivered in EPSG:32650 (UTM 50N, not the
delivery CRS) with heights as strings, a planar DEM in EPSG:4548 (so the lowest ground under a
footprint is known exactly), a GBK pinyin Shapefile, and broken files for the error messages.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from pyproj import Transformer
from rasterio.transform import from_origin

from core import frames
from core.delivery.accounting import REPORT_JSON
from core.delivery.errors import (
    CrsMissingError,
    EmptyLayerError,
    EncodingError,
    FieldMissingError,
    NonSpatialError,
)
from core.delivery.mapping import load_mapping
from core.delivery.read import FieldSpec, read_layer
from core.delivery.values import parse_number
from pipelines.buildings import BuildingOptions, build_buildings
from tiles.gltf_read import read_glb
from tiles.gltf_validator import validate_glb_files, validator_available
from tiles.tileset import OrientedBox

X0, Y0 = 536_000.0, 3_644_000.0  # EPSG:4548, Jiefang Street
DEM_A, DEM_BX, DEM_BY = 20.0, 0.01, 0.02  # ground = A + BX·(x-X0) + BY·(y-Y0), orthometric


def ground_4548(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return DEM_A + DEM_BX * (np.asarray(x) - X0) + DEM_BY * (np.asarray(y) - Y0)


def rect(x: float, y: float, w: float, h: float) -> shapely.Polygon:
    return shapely.box(X0 + x, Y0 + y, X0 + x + w, Y0 + y + h)


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def dem(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 m planar DEM in EPSG:4548 (bilinear interpolation of a plane is exact)."""
    path = tmp_path_factory.mktemp("dem") / "dem.tif"
    x_left, y_top, cell, n = X0 - 200.0, Y0 + 400.0, 2.0, 400
    cols, rows = np.meshgrid(np.arange(n), np.arange(n))
    z = ground_4548(x_left + (cols + 0.5) * cell, y_top - (rows + 0.5) * cell).astype("float32")
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        height=n,
        width=n,
        count=1,
        dtype="float32",
        crs="EPSG:4548",
        transform=from_origin(x_left, y_top, cell, cell),
        nodata=-9999,
    ) as ds:
        ds.write(z, 1)
    return path


FEATURES = [
    # id, geometry (4548), height (string as delivered), floors, use, roof, expected outcome
    ("B1", rect(0, 0, 20, 10), "12.5 m", 4, "residential", "gable", "repaired:parsed_value"),
    ("B2", rect(30, 0, 12, 12), "12,5", None, "office", None, "repaired:parsed_value"),
    (
        "B3",
        rect(50, 0, 30, 30).difference(rect(60, 10, 10, 10)),
        "",
        6,
        "school",
        "flat",
        "repaired:height_from_floors",
    ),
    ("B4", shapely.affinity.rotate(rect(0, 40, 16, 9), 30), " 7 ", None, "residential", "hip", "written"),
    ("B5", rect(40, 40, 10, 10), "", None, "public", None, "rejected:missing_height"),
    ("B6", rect(60, 40, 10, 10), "abc", 3, "public", None, "rejected:unparsable_value"),
    (
        "B7",
        shapely.Polygon([(X0 + 100, Y0), (X0 + 110, Y0 + 10), (X0 + 110, Y0), (X0 + 100, Y0 + 10)]),
        "6",
        None,
        "courtyard_house",
        "gable",
        "repaired:make_valid",
    ),
    ("B8", rect(0, 0, 20, 10), "12.5 m", 4, "residential", "gable", "rejected:duplicate"),  # copy of B1
    ("B9", rect(120, 0, 10, 10), "900", None, "industrial", "flat", "rejected:absurd_height"),
    ("B10", rect(140, 0, 10, 10), "", 150, "office", None, "rejected:absurd_height"),
    (
        "B11",
        shapely.Polygon([(X0 + 160, Y0), (X0 + 170, Y0), (X0 + 180, Y0)]),
        "5",
        None,
        "public",
        None,
        "rejected:zero_area",
    ),
    ("B12", rect(0, 60, 25, 14), "", 2, "courtyard_house", None, "repaired:height_from_floors"),
    ("B13", rect(30, 60, 40, 60), "30", 10, "commercial", None, "written"),
]


@pytest.fixture(scope="module")
def utm_gpkg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The features above delivered in EPSG:32650 with string heights."""
    path = tmp_path_factory.mktemp("src") / "buildings_utm.gpkg"
    geoms = np.array([f[1] for f in FEATURES], dtype=object)
    t = Transformer.from_crs(4548, 32650, always_xy=True)
    geoms_utm = shapely.transform(geoms, lambda c: np.column_stack(t.transform(c[:, 0], c[:, 1])))
    gdf = gpd.GeoDataFrame(
        {
            "id": [f[0] for f in FEATURES],
            "name": [f"楼{'B1' if f[0] == 'B8' else f[0]}" for f in FEATURES],
            "height": [f[2] for f in FEATURES],
            "floors": [np.nan if f[3] is None else float(f[3]) for f in FEATURES],
            "use": [f[4] for f in FEATURES],
            "roof_type": [f[5] for f in FEATURES],
            "community": ["C01"] * len(FEATURES),
        },
        geometry=geoms_utm,
        crs="EPSG:32650",
    )
    gdf.to_file(path, layer="buildings_utm")
    return path


def _build(src: Path, out: Path, **kw: object) -> object:
    options = BuildingOptions(workers=1, **kw)  # type: ignore[arg-type]
    return build_buildings(src, out, options)


@pytest.fixture(scope="module")
def built(utm_gpkg: Path, dem: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("tiles") / "buildings"
    return out, _build(utm_gpkg, out, dem=dem, lod=2)


@pytest.fixture(scope="module")
def built_lod1(utm_gpkg: Path, dem: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("tiles1") / "buildings"
    return out, _build(utm_gpkg, out, dem=dem, lod=1)


# ------------------------------------------------------------------------------------ tile reading
def walk(tile: dict, depth: int = 0):
    yield tile, depth
    for child in tile.get("children", []):
        yield from walk(child, depth + 1)


def leaf_tiles(out: Path) -> list[dict]:
    ts = json.loads((out / "tileset.json").read_text())
    return [t for t, _ in walk(ts["root"]) if not t.get("children")]


def tile_features(out: Path, tile: dict) -> dict[str, dict[str, np.ndarray | dict]]:
    """Per feature id: ENU vertices, normals, and its property-table row."""
    glb = read_glb((out / tile["content"]["uri"]).read_bytes())
    pos = frames.gltf_to_enu(glb.attribute("POSITION").astype(np.float64))
    nrm = frames.gltf_to_enu(glb.attribute("NORMAL").astype(np.float64))
    fid = glb.attribute("_FEATURE_ID_0").astype(int)
    tri = glb.indices().reshape(-1, 3)
    table = glb.property_table()
    out_map = {}
    for i, fid_value in enumerate(table["id"]):
        sel = fid == i
        tsel = fid[tri[:, 0]] == i
        out_map[fid_value] = {
            "enu": pos[sel],
            "normals": nrm[sel],
            "tri_enu": pos[tri[tsel]],
            "tri_normals": nrm[tri[tsel][:, 0]],
            "props": {k: v[i] for k, v in table.items()},
        }
    return out_map


def enu_frame(out: Path) -> np.ndarray:
    ts = json.loads((out / "tileset.json").read_text())
    return np.array(ts["root"]["transform"]).reshape(4, 4).T


def enu_to_ecef(m: np.ndarray, enu: np.ndarray) -> np.ndarray:
    return enu @ m[:3, :3].T + m[:3, 3]


def ecef_to_4548(ecef: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, y in EPSG:4548 and orthometric H (ellipsoidal − EGM96 N)."""
    llh = frames.ecef_to_lonlat_ellipsoidal(ecef)
    n = frames.geoid_undulation(llh[:, 0], llh[:, 1])
    x, y = Transformer.from_crs(4490, 4548, always_xy=True).transform(llh[:, 0], llh[:, 1])
    return np.asarray(x), np.asarray(y), llh[:, 2] - n


def expected(fid: str) -> str:
    return next(f[6] for f in FEATURES if f[0] == fid)


# ------------------------------------------------------------------------------------ tests
def test_report_accounts_for_every_feature(built: tuple[Path, object]) -> None:
    out, result = built
    report = json.loads((out / REPORT_JSON).read_text())
    counts = report["counts"]
    assert counts["input"] == len(FEATURES)
    assert counts["input"] == counts["written"] + counts["rejected"]
    rejected = {r["id"]: r for r in report["rejected"]}
    repaired = {r["id"]: r["how"] for r in report["repaired"]}
    for fid, *_rest, outcome in FEATURES:
        kind, _, code = outcome.partition(":")
        if kind == "rejected":
            assert rejected[fid]["code"] == code, fid
            assert fid in rejected[fid]["message"] and "buildings_utm.gpkg" in rejected[fid]["message"]
        else:
            assert fid not in rejected, (fid, rejected.get(fid))
            # the input is in UTM 50N, true to scale here: it is the working CRS, nothing reprojected
            assert "reprojected" not in repaired.get(fid, [])
            if kind == "repaired":
                assert code in repaired[fid], (fid, repaired[fid])
    assert rejected["B8"]["related_id"] == "B1" and "B1" in rejected["B8"]["message"]
    assert rejected["B6"]["field"] == "height" and rejected["B6"]["value"] == "abc"
    assert rejected["B10"]["field"] == "floors"
    assert "B11" in rejected
    text = (out / "report.txt").read_text()
    assert "rejected" in text and "missing_height" in text
    assert result.report.counts == counts


def test_ids_in_property_tables_equal_written_ids(built: tuple[Path, object]) -> None:
    out, _ = built
    ids: list[str] = []
    for tile in leaf_tiles(out):
        ids += list(tile_features(out, tile))
    written = {f[0] for f in FEATURES if not f[6].startswith("rejected")}
    assert sorted(ids) == sorted(written)
    feats = {k: v for t in leaf_tiles(out) for k, v in tile_features(out, t).items()}
    assert feats["B1"]["props"]["name"] == "楼B1"
    assert feats["B1"]["props"]["height"] == pytest.approx(12.5)
    assert feats["B3"]["props"]["height"] == pytest.approx(18.0)  # 6 floors x 3 m
    assert feats["B2"]["props"]["floors"] == 0  # noData
    assert feats["B1"]["props"]["roof_type"] == "gable"
    assert feats["B13"]["props"]["use"] == "commercial"


@pytest.mark.parametrize("which", ["built", "built_lod1"])
def test_bases_on_the_dem_with_geoid(which: str, request: pytest.FixtureRequest) -> None:
    out, _ = request.getfixturevalue(which)
    m = enu_frame(out)
    src = {f[0]: f[1] for f in FEATURES}
    for tile in leaf_tiles(out):
        for fid, feat in tile_features(out, tile).items():
            ecef = enu_to_ecef(m, feat["enu"])
            x, y, h_ortho = ecef_to_4548(ecef)
            poly = shapely.make_valid(src[fid])
            coords = shapely.get_coordinates(poly)
            lowest = ground_4548(coords[:, 0], coords[:, 1]).min()  # plane: min at a vertex
            assert h_ortho.min() == pytest.approx(lowest, abs=0.02), fid
            assert feat["props"]["ground_height"] == pytest.approx(lowest, abs=0.01)
            top = lowest + feat["props"]["height"]
            assert h_ortho.max() == pytest.approx(top, abs=0.02), fid
            # no floating corner: every footprint vertex's ground is at or above the base
            assert np.all(ground_4548(coords[:, 0], coords[:, 1]) >= h_ortho.min() - 0.02)


def test_geoid_is_applied(built: tuple[Path, object]) -> None:
    out, _ = built
    m = enu_frame(out)
    feat = tile_features(out, leaf_tiles(out)[0])
    fid, f = next(iter(feat.items()))
    ecef = enu_to_ecef(m, f["enu"])
    llh = frames.ecef_to_lonlat_ellipsoidal(ecef)
    lowest = np.argmin(llh[:, 2])
    h_ell = llh[lowest, 2]
    h_ortho = f["props"]["ground_height"]
    from tests.test_frames import egm96_from_gtx

    n = egm96_from_gtx(llh[lowest, 0], llh[lowest, 1])
    assert -6.0 < n < -3.5
    assert h_ell - h_ortho == pytest.approx(n, abs=0.03)


def test_lod1_footprint_area_preserved(built_lod1: tuple[Path, object]) -> None:
    out, _ = built_lod1
    m = enu_frame(out)
    src = {f[0]: f[1] for f in FEATURES}
    for tile in leaf_tiles(out):
        for fid, feat in tile_features(out, tile).items():
            roof = feat["tri_normals"][:, 2] > 0.99
            tris = feat["tri_enu"][roof].reshape(-1, 3)
            x, y, _ = ecef_to_4548(enu_to_ecef(m, tris))
            p = np.column_stack([x, y]).reshape(-1, 3, 2)
            area = (
                0.5
                * np.abs(
                    (p[:, 1, 0] - p[:, 0, 0]) * (p[:, 2, 1] - p[:, 0, 1])
                    - (p[:, 2, 0] - p[:, 0, 0]) * (p[:, 1, 1] - p[:, 0, 1])
                ).sum()
            )
            expected_area = shapely.make_valid(src[fid]).area
            assert area == pytest.approx(expected_area, rel=0.005), fid


def test_lod2_roofs(built: tuple[Path, object]) -> None:
    out, _ = built
    feats = {k: v for t in leaf_tiles(out) for k, v in tile_features(out, t).items()}
    # gable B1 (20 x 10 m, 12.5 m): sloped roof faces, ridge at the full height, eaves lower
    b1 = feats["B1"]
    sloped = (b1["tri_normals"][:, 2] > 0.3) & (b1["tri_normals"][:, 2] < 0.95)
    assert sloped.sum() >= 4
    assert np.degrees(np.arccos(b1["tri_normals"][sloped][:, 2])).mean() == pytest.approx(30.0, abs=1.0)
    # flat B3 has only flat roof faces and walls
    nz = feats["B3"]["tri_normals"][:, 2]
    assert np.all((nz > 0.999) | (np.abs(nz) < 0.01))
    # walls are vertical, normals unit length
    for f in feats.values():
        assert np.allclose(np.linalg.norm(f["normals"], axis=1), 1.0, atol=5e-3)


def test_tileset_structure_hierarchy_and_boxes(utm_gpkg: Path, dem: Path, tmp_path: Path) -> None:
    out = tmp_path / "b"
    result = _build(utm_gpkg, out, dem=dem, max_features=3)
    ts = json.loads((out / "tileset.json").read_text())
    assert ts["asset"]["version"] == "1.1"
    assert len(ts["root"]["transform"]) == 16
    tiles = list(walk(ts["root"]))
    assert len(tiles) > 3 and result.tiles == len(tiles)
    assert ts["geometricError"] >= ts["root"]["geometricError"] > 0
    for tile, _depth in tiles:
        assert tile["refine"] == "REPLACE"
        box = OrientedBox.from_json(tile["boundingVolume"]["box"])
        feats = tile_features(out, tile)
        assert 0 < len(feats) <= 3
        for f in feats.values():
            assert box.contains(f["enu"], tol=0.01).all()
        for child in tile.get("children", []):
            assert child["geometricError"] <= tile["geometricError"]
            assert box.contains(
                OrientedBox.from_json(child["boundingVolume"]["box"]).corners(), tol=0.01
            ).all()
        if not tile.get("children"):
            assert tile["geometricError"] == 0.0
        else:
            # measured: the tallest building left out of this tile bounds its error from below
            assert tile["geometricError"] > 0


def test_incremental_rebuild_rewrites_only_affected_tiles(utm_gpkg: Path, dem: Path, tmp_path: Path) -> None:
    out = tmp_path / "b"
    first = _build(utm_gpkg, out, dem=dem, max_features=3)
    second = _build(utm_gpkg, out, dem=dem, max_features=3)
    assert second.tiles_reused == first.tiles and second.tiles_written == 0
    manifest = json.loads((out / ".build" / "manifest.json").read_text())
    assert all(t["ids"] for t in manifest["tiles"].values())
    gdf = gpd.read_file(utm_gpkg)
    gdf.loc[gdf["id"] == "B13", "height"] = "31"
    changed = tmp_path / "changed.gpkg"
    gdf.to_file(changed, layer="buildings")
    third = _build(changed, out, dem=dem, max_features=3)
    depth = max(len(k.split("/")) for k in manifest["tiles"])  # noqa: F841 - keys are z/x/y
    holding = [k for k, t in manifest["tiles"].items() if "B13" in t["ids"]]
    assert 0 < third.tiles_written < first.tiles
    assert third.tiles_written <= len(holding) + 3  # its leaf and ancestors (which may omit it)
    assert third.tiles_reused == first.tiles - third.tiles_written


def test_failed_run_leaves_previous_tileset(
    utm_gpkg: Path, dem: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "b"
    _build(utm_gpkg, out, dem=dem)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    import pipelines.building_tiles as pb

    def boom(*_a: object, **_k: object) -> None:
        raise RuntimeError("killed")

    monkeypatch.setattr(pb, "encode_tile", boom)
    with pytest.raises(RuntimeError):
        _build(utm_gpkg, out, dem=dem, lod=1)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


def test_boundary_and_default_height_policy(utm_gpkg: Path, dem: Path, tmp_path: Path) -> None:
    boundary = tmp_path / "boundary.gpkg"
    gpd.GeoDataFrame({"name": ["解放街道"]}, geometry=[rect(-10, -10, 100, 80)], crs="EPSG:4548").to_file(
        boundary
    )
    out = tmp_path / "b"
    result = _build(utm_gpkg, out, dem=dem, boundary=boundary, missing_height="default", default_height=9.0)
    # B13 (x 30..70, y 60..120) straddles the boundary: kept (core.delivery.rules: outside means
    # no part within 1 m of the boundary, the rule the PostGIS loader applies too)
    assert result.report.issue_for("B13")[0] != "rejected"
    status, issues = result.report.issue_for("B5")
    assert status == "repaired" and "default_height" in [i.code for i in issues]


@pytest.mark.skipif(
    not validator_available(), reason="node_modules/gltf-validator not installed (npm install)"
)
def test_gltf_validator_clean(built: tuple[Path, object], built_lod1: tuple[Path, object]) -> None:
    paths = [p for out, _ in (built, built_lod1) for p in (out / "tiles").rglob("*.glb")]
    reports = validate_glb_files(paths)
    assert len(reports) == len(paths)
    for r in reports:
        assert r["numErrors"] == 0 and r["numWarnings"] == 0, r


def test_worker_pool_gives_identical_tiles(utm_gpkg: Path, dem: Path, tmp_path: Path) -> None:
    one = build_buildings(utm_gpkg, tmp_path / "one", BuildingOptions(dem=dem, workers=1, max_features=3))
    two = build_buildings(utm_gpkg, tmp_path / "two", BuildingOptions(dem=dem, workers=2, max_features=3))
    assert one.tiles == two.tiles
    for p in (tmp_path / "one" / "tiles").rglob("*.glb"):
        assert p.read_bytes() == (tmp_path / "two" / p.relative_to(tmp_path / "one")).read_bytes()


# ------------------------------------------------------------------------------------ sources
SHP_MAPPING = """
encoding: GBK
fields: {id: BH, name: MC, floors: CS, height: JZGD, use: YT, roof_type: WDLX, community: SQ}
values:
  use: {住宅: residential, 办公: office, 学校: school}
  roof_type: {平顶: flat, 双坡: gable, 四坡: hip}
"""


@pytest.fixture()
def pinyin_shp(tmp_path: Path) -> tuple[Path, Path]:
    shp = tmp_path / "shp" / "buildings.shp"
    shp.parent.mkdir()
    gpd.GeoDataFrame(
        {
            "BH": ["B1", "B2", "B3"],
            "MC": ["解放大厦", "龙子湖学校", "住宅楼"],
            "CS": [10, 3, None],
            "JZGD": ["31.5", "", "9"],
            "YT": ["办公", "学校", "住宅"],
            "WDLX": ["平顶", "四坡", "双坡"],
            "SQ": ["C01", "C02", "C03"],
        },
        geometry=[rect(0, 0, 20, 20), rect(40, 0, 30, 15), rect(0, 40, 12, 8)],
        crs="EPSG:4548",
    ).to_file(shp, encoding="GBK")
    mapping = Path(__file__).resolve().parent.parent / "data" / "mappings" / "buildings_shp.yaml"
    if not mapping.exists():
        mapping = tmp_path / "buildings_shp.yaml"
        mapping.write_text(SHP_MAPPING, encoding="utf-8")
    return shp, mapping


def test_pinyin_gbk_shapefile_via_mapping(pinyin_shp: tuple[Path, Path], dem: Path, tmp_path: Path) -> None:
    shp, mapping = pinyin_shp
    result = _build(shp, tmp_path / "b", dem=dem, mapping=mapping)
    assert result.report.counts["written"] == 3
    feats = {k: v for t in leaf_tiles(tmp_path / "b") for k, v in tile_features(tmp_path / "b", t).items()}
    assert feats["B1"]["props"]["name"] == "解放大厦"
    assert feats["B1"]["props"]["use"] == "office" and feats["B1"]["props"]["roof_type"] == "flat"
    assert feats["B2"]["props"]["roof_type"] == "hip" and feats["B2"]["props"]["height"] == pytest.approx(9.0)
    assert feats["B3"]["props"]["use"] == "residential"


def test_wrong_encoding_is_a_clear_error(pinyin_shp: tuple[Path, Path]) -> None:
    shp, mapping = pinyin_shp
    shp.with_suffix(".cpg").write_text("UTF-8")
    with pytest.raises(EncodingError, match="--encoding GBK"):
        read_layer(shp, [FieldSpec("id", required=True)], mapping=load_mapping(mapping))
    layer = read_layer(
        shp,
        [FieldSpec("id", required=True), FieldSpec("name")],
        mapping=load_mapping(mapping),
        encoding="GBK",
    )
    assert layer.gdf["name"].tolist()[0] == "解放大厦"


def test_missing_crs_error(pinyin_shp: tuple[Path, Path]) -> None:
    shp, mapping = pinyin_shp
    shp.with_suffix(".prj").unlink()
    no_crs = dataclasses.replace(load_mapping(mapping), crs=None)
    with pytest.raises(CrsMissingError, match="--src-crs"):
        read_layer(shp, [FieldSpec("id", required=True)], mapping=no_crs)
    # a mapping's crs: is the fallback for files without one
    with_crs = dataclasses.replace(no_crs, crs="EPSG:4548")
    layer = read_layer(shp, [FieldSpec("id", required=True)], mapping=with_crs)
    assert layer.crs.to_epsg() == 4548 and "mapping" in layer.report.notes[0]
    layer = read_layer(
        shp, [FieldSpec("id", required=True)], mapping=load_mapping(mapping), src_crs="EPSG:4548"
    )
    assert layer.crs.to_epsg() == 4548


def test_missing_field_error_lists_fields(pinyin_shp: tuple[Path, Path]) -> None:
    shp, mapping = pinyin_shp
    with pytest.raises(FieldMissingError) as exc:
        read_layer(
            shp,
            [FieldSpec("id", required=True), FieldSpec("height", "float")],
            fields={"height": "GAODU"},
            mapping=load_mapping(mapping),
        )
    msg = str(exc.value)
    assert "GAODU" in msg and "JZGD" in msg and "BH" in msg and str(shp) in msg


def test_empty_layer_and_non_spatial_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.gpkg"
    gpd.GeoDataFrame({"id": []}, geometry=[], crs="EPSG:4548").to_file(empty, layer="empty")
    with pytest.raises(EmptyLayerError, match="no features"):
        read_layer(empty, [FieldSpec("id", required=True)])
    csv = tmp_path / "table.csv"
    csv.write_text("id,name\nB1,a\n", encoding="utf-8")
    with pytest.raises(NonSpatialError, match="coordinate columns"):
        read_layer(csv, [FieldSpec("id", required=True)])
    geojson = tmp_path / "nogeom.geojson"
    geojson.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [{"type": "Feature", "properties": {"id": "B1"}, "geometry": None}],
            }
        )
    )
    with pytest.raises((NonSpatialError, EmptyLayerError, CrsMissingError)):
        read_layer(geojson, [FieldSpec("id", required=True)])


def test_csv_with_coordinates_and_gbk(tmp_path: Path) -> None:
    csv = tmp_path / "points.csv"
    csv.write_bytes(
        "id,name,x,y,height\nP1,解放,536000,3644000,12.5 m\nP2,龙子湖,536010,3644010,abc\n".encode("gbk")
    )
    # a CSV declares no encoding: GB2312-range bytes are detected as GBK (and said so)
    detected = read_layer(csv, [FieldSpec("id", required=True), FieldSpec("name")], src_crs="EPSG:4548")
    assert detected.gdf["name"].tolist() == ["解放", "龙子湖"]
    assert any("detected as GBK" in n for n in detected.report.notes)
    layer = read_layer(
        csv,
        [FieldSpec("id", required=True), FieldSpec("name"), FieldSpec("height", "float")],
        src_crs="EPSG:4548",
        encoding="GBK",
    )
    assert layer.gdf["name"].tolist() == ["解放", "龙子湖"]
    assert layer.report.rejected[1].code == "unparsable_value"
    with pytest.raises(CrsMissingError):
        read_layer(csv, [FieldSpec("id", required=True)], encoding="GBK")


@pytest.mark.parametrize(
    ("text", "value", "status"),
    [
        ("12.5 m", 12.5, "parsed"),
        ("12,5", 12.5, "parsed"),
        (" 12 ", 12.0, "ok"),
        ("", None, "empty"),
        ("abc", None, "unparsable"),
        (None, None, "empty"),
        (7, 7.0, "ok"),
        ("12米", 12.0, "parsed"),
    ],
)
def test_parse_number(text: object, value: float | None, status: str) -> None:
    assert parse_number(text) == (value, status)


def test_cli_buildings(utm_gpkg: Path, dem: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from onemap.cli import app

    out = tmp_path / "cli"
    res = CliRunner().invoke(
        app,
        ["tiles", "buildings", str(utm_gpkg), "--out", str(out), "--dem", str(dem), "--lod", "1"],
        env={"COLUMNS": "120"},
    )
    assert res.exit_code == 0, res.output
    assert (out / "tileset.json").exists() and (out / "report.txt").exists()
    res = CliRunner().invoke(
        app, ["tiles", "buildings", str(utm_gpkg), "--out", str(out), "--height-field", "GAODU"]
    )
    assert res.exit_code == 1  # an input error (usage errors exit 2)
    assert "GAODU" in res.output + str(res.exception)
    assert os.path.exists(out / "tileset.json")  # the failed run left the previous output alone
