"""Vegetation tiles: trees (instanced), green spaces (draped) and water (flat), accounting."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from shapely.geometry import box

from core.frames import ecef_to_lonlat_ellipsoidal, geoid_undulation, gltf_to_enu, projected_to_lonlat
from pipelines.vegetation import GREEN_LIFT_M, VegetationOptions, build_vegetation
from tests.tiles_fixtures import (
    CRS_4548,
    X0,
    Y0,
    all_contents,
    dem_plane,
    enu_to_ecef,
    horizontal_error_m,
    leaf_contents,
    root_matrix,
    write_boundary,
    write_dem,
    write_points,
)
from tiles.gltf_read import read_glb
from tiles.gltf_validator import validate_glb_files, validator_available
from tiles.instancing import decode_instanced_glb

N_TREES = 900
WATER_LEVEL = 16.5


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict:
    d = tmp_path_factory.mktemp("vegetation")
    write_dem(d / "dem.tif")
    write_boundary(d / "boundary.gpkg")
    rng = np.random.default_rng(11)
    rows = [dict(id=f"T{i:06d}", species=["悬铃木", "雪松", "香樟"][i % 3], height=float(rng.uniform(4, 18)),
                 crown_diameter=float(rng.uniform(2, 9)), setting="street",
                 x=X0 + float(rng.uniform(-500, 500)), y=Y0 + float(rng.uniform(-500, 500)))
            for i in range(N_TREES)]
    rows[1]["crown_diameter"] = None
    bad = [
        dict(rows[5], id="T900001"),  # duplicate of T000005
        dict(rows[6], id="T900002", height=0.0),  # absurd height
        dict(rows[7], id="T900003", x=X0 + 5000.0),  # outside the boundary
        dict(rows[8], id="T900004", height=75.0),  # absurd height
    ]
    write_points(d / "trees.gpkg", "trees", [dict(r) for r in rows] + bad)
    green = gpd.GeoDataFrame(
        {"id": ["GR0001", "GR0002", "GR0003"], "kind": ["park", "courtyard", "separator"],
         "name": ["公园", None, None]},
        geometry=[box(X0 - 300, Y0 - 300, X0, Y0), box(X0 - 200, Y0 - 200, X0 - 150, Y0 - 150),
                  box(X0 + 10, Y0 - 400, X0 + 16, Y0 + 400)], crs=CRS_4548)
    green.to_file(d / "green.gpkg", layer="green")
    water = gpd.GeoDataFrame({"id": ["WA01"], "name": ["龙子湖"], "kind": ["lake"],
                              "water_level": [WATER_LEVEL]},
                             geometry=[box(X0 + 100, Y0 + 100, X0 + 400, Y0 + 350)], crs=CRS_4548)
    water.to_file(d / "water.gpkg", layer="water")
    result = build_vegetation(d / "trees.gpkg", d / "out", VegetationOptions(
        dem=d / "dem.tif", green=d / "green.gpkg", water=d / "water.gpkg", max_per_leaf=300))
    return {"dir": d, "rows": rows, "result": result, "green": green, "water": water}


def test_report_counts_add_up_with_bad_points(built: dict) -> None:
    trees = built["result"].reports[0]
    c = trees.counts
    assert c["input"] == N_TREES + 4 and c["written"] == N_TREES and c["rejected"] == 4
    assert {i.id: i.code for i in trees.rejected.values()} == {
        "T900001": "duplicate", "T900002": "absurd_height", "T900003": "outside_boundary",
        "T900004": "absurd_height"}
    assert trees.issue_for("T000001")[0] == "repaired"  # crown diameter from height
    doc = json.loads((built["dir"] / "out" / "report.json").read_text())
    assert [layer["layer"] for layer in doc["layers"]] == ["trees", "water", "green"]


def test_tree_positions_scales_and_ids(built: dict) -> None:
    tileset = built["dir"] / "out" / "trees" / "tileset.json"
    m = root_matrix(tileset)
    by_id = {r["id"]: r for r in built["rows"]}
    ids, enu, scales = [], [], []
    for p in leaf_contents(tileset):
        nodes, table = decode_instanced_glb(p.read_bytes())
        for node in nodes:
            ids += [table["id"][f] for f in node.feature_ids]
            enu.append(node.translations_enu)
            scales.append(node.scales)
    assert sorted(ids) == sorted(by_id)
    llh = ecef_to_lonlat_ellipsoidal(enu_to_ecef(m, np.vstack(enu)))
    x = np.array([by_id[i]["x"] for i in ids])
    y = np.array([by_id[i]["y"] for i in ids])
    lon, lat = projected_to_lonlat(x, y, "EPSG:4548")
    assert horizontal_error_m(llh[:, 0], llh[:, 1], lon, lat).max() < 0.05
    assert np.abs(llh[:, 2] - (dem_plane(x, y) + geoid_undulation(lon, lat))).max() < 0.05
    s = np.vstack(scales)
    heights = np.array([by_id[i]["height"] for i in ids])
    assert np.allclose(s[:, 2], heights, atol=1e-4)
    assert np.allclose(s[:, 0], s[:, 1])


def _area_vertices(out: Path) -> tuple[np.ndarray, list[str]]:
    tileset = out / "areas" / "tileset.json"
    m = root_matrix(tileset)
    pts, owners = [], []
    for p in leaf_contents(tileset):
        glb = read_glb(p.read_bytes())
        table = glb.property_table(0)
        enu = gltf_to_enu(glb.attribute("POSITION").astype(np.float64))
        pts.append(enu_to_ecef(m, enu))
        owners += [table["id"][int(f)] for f in glb.attribute("_FEATURE_ID_0")]
    return ecef_to_lonlat_ellipsoidal(np.vstack(pts)), owners


def test_water_flat_at_level_and_green_draped(built: dict) -> None:
    llh, owners = _area_vertices(built["dir"] / "out")
    owners = np.array(owners)
    n = geoid_undulation(llh[:, 0], llh[:, 1])
    water = owners == "WA01"
    assert water.any()
    assert np.abs(llh[water, 2] - (WATER_LEVEL + n[water] + 0.05)).max() < 0.05
    green = ~water
    from pyproj import Transformer

    x, y = Transformer.from_crs(4326, 4548, always_xy=True).transform(llh[green, 0], llh[green, 1])
    assert np.abs(llh[green, 2] - (dem_plane(x, y) + n[green] + GREEN_LIFT_M)).max() < 0.05


def test_green_overlaps_resolved(built: dict) -> None:
    areas = built["result"].areas_set
    polys = [p for p in areas.polygons if p is not None and not p.is_empty]
    union = shapely.union_all(polys).area
    assert abs(sum(p.area for p in polys) - union) < 1e-3 * union
    ids = list(areas.columns["id"].values)
    court = areas.polygons[ids.index("GR0002")]
    assert abs(court.area - 50 * 50) < 1e-6  # the courtyard keeps its shape, the park has a hole


@pytest.mark.skipif(not validator_available(), reason="gltf-validator not installed")
def test_glb_validator_clean(built: dict) -> None:
    out = built["dir"] / "out"
    files = all_contents(out / "trees" / "tileset.json") + all_contents(out / "areas" / "tileset.json")
    reports = validate_glb_files(files)
    assert reports and all(r["numErrors"] == 0 and r["numWarnings"] == 0 for r in reports), reports[0]


def test_group_tileset_references_both(built: dict) -> None:
    doc = json.loads((built["dir"] / "out" / "tileset.json").read_text())
    uris = [c["content"]["uri"] for c in doc["root"]["children"]]
    assert uris == ["trees/tileset.json", "areas/tileset.json"]
    w, s, e, n = doc["root"]["boundingVolume"]["region"][:4]
    lon, lat = projected_to_lonlat(np.array([X0]), np.array([Y0]), "EPSG:4548")
    assert w < np.radians(lon[0]) < e and s < np.radians(lat[0]) < n
