"""Road tiles: disjoint junction surfaces, ids per triangle, draping, bridges at deck height."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely
from pyproj import Transformer
from shapely.geometry import LineString

from core.frames import ecef_to_lonlat_ellipsoidal, geoid_undulation, gltf_to_enu
from pipelines.roads import DECK_THICKNESS_M, ROAD_LIFT_M, RoadOptions, build_roads, road_buffers
from tests.tiles_fixtures import (
    CRS_4548,
    X0,
    Y0,
    all_contents,
    dem_plane,
    enu_to_ecef,
    leaf_contents,
    root_matrix,
    write_boundary,
    write_dem,
)
from tiles.gltf_read import read_glb
from tiles.gltf_validator import validate_glb_files, validator_available

VALLEY = (X0 + 210.0, X0 + 250.0)
DECK = 7.0
ROADS = [  # id, name, class, width, lanes, bridge, deck_height, coordinates
    ("R0001", "A路", "primary", 24.0, 6, 0, None, [(X0 - 400, Y0), (X0 + 200, Y0)]),
    ("R0002", "B路", "secondary", 15.0, 4, 0, None, [(X0, Y0 - 400), (X0, Y0 + 400)]),
    ("R0003", "C巷", "residential", 6.0, 2, 0, None, [(X0 - 200, Y0), (X0 - 200, Y0 + 300)]),
    ("R0004", "A路桥", "primary", 24.0, 6, 1, DECK, [(X0 + 200, Y0), (X0 + 260, Y0)]),
    ("R0005", "A路", "primary", 24.0, 6, 0, None, [(X0 + 260, Y0), (X0 + 500, Y0)]),
    ("R0006", "D路", "tertiary", 10.0, 2, 0, None, [(X0 + 100, Y0 - 300), (X0 + 100, Y0 - 100),
                                                    (X0 + 300, Y0 - 100)]),
    ("R0007", None, "service", None, 1, 0, None, [(X0 + 100, Y0 - 100), (X0 + 100, Y0 - 50)]),
    ("R0008", None, "service", -3.0, 1, 0, None, [(X0 + 150, Y0 - 100), (X0 + 150, Y0 - 50)]),
    ("R0009", None, "service", 4.0, 1, 0, None, [(X0 + 3000, Y0), (X0 + 3100, Y0)]),
]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict:
    d = tmp_path_factory.mktemp("roads")
    write_dem(d / "dem.tif", valley=VALLEY, depth=6.0)
    write_boundary(d / "boundary.gpkg")
    gdf = gpd.GeoDataFrame(
        {"id": [r[0] for r in ROADS], "name": [r[1] for r in ROADS], "class": [r[2] for r in ROADS],
         "width": [r[3] for r in ROADS], "lanes": [r[4] for r in ROADS], "bridge": [r[5] for r in ROADS],
         "deck_height": [r[6] for r in ROADS]},
        geometry=[LineString(r[7]) for r in ROADS], crs=CRS_4548)
    gdf.to_file(d / "roads.gpkg", layer="roads")
    result = build_roads(d / "roads.gpkg", d / "out", RoadOptions(dem=d / "dem.tif", keep_leaf_geometry=True))
    return {"dir": d, "result": result}


def test_report_counts(built: dict) -> None:
    report = built["result"].report
    c = report.counts
    assert (c["input"], c["written"], c["rejected"]) == (9, 7, 2)
    assert {i.id: i.code for i in report.rejected.values()} == {"R0008": "absurd_value",
                                                                 "R0009": "outside_boundary"}
    assert report.issue_for("R0007")[0] == "repaired"  # default width
    assert report.output["bridges"] == 1


def test_junctions_have_no_overlapping_triangles(built: dict) -> None:
    res = built["result"]
    tri = np.vstack([m["tri_xy"] for m in res.build.leaf_meshes])
    owner = np.concatenate([m["owner"] for m in res.build.leaf_meshes])
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    tri_area = 0.5 * np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])
    ground = [i for i, p in enumerate(res.surfaces.polygons) if p is not None]
    ids = res.surfaces.columns["id"].values
    rows = {r[0]: r for r in ROADS}
    lines = np.array([LineString(rows[i][7]) for i in ids], dtype=object)
    buffers = road_buffers(lines, np.asarray(res.surfaces.columns["width"].values, float))
    union = shapely.union_all(buffers[ground]).area
    assert abs(tri_area.sum() - union) < 1e-6 * union  # union area == sum of triangle areas
    # every triangle belongs to the road whose (resolved) surface contains it
    centroids = shapely.points(tri.mean(axis=1))
    containers = np.array([res.surfaces.polygons[o] for o in owner], dtype=object)
    assert shapely.covers(shapely.buffer(containers, 1e-6), centroids).all()
    # the primary road wins the crossing with the secondary one
    crossing = shapely.Point(X0, Y0)
    owner_ids = {ids[o] for o, c in zip(owner, centroids, strict=True) if c.distance(crossing) < 5}
    assert owner_ids == {"R0001"}


def _vertices_by_id(out) -> tuple[np.ndarray, np.ndarray]:
    tileset = out / "tileset.json"
    m = root_matrix(tileset)
    pts, ids = [], []
    for p in leaf_contents(tileset):
        glb = read_glb(p.read_bytes())
        table = glb.property_table(0)
        pts.append(enu_to_ecef(m, gltf_to_enu(glb.attribute("POSITION").astype(np.float64))))
        ids += [table["id"][int(f)] for f in glb.attribute("_FEATURE_ID_0")]
    return ecef_to_lonlat_ellipsoidal(np.vstack(pts)), np.array(ids)


def test_ids_draping_and_bridge_deck_height(built: dict) -> None:
    llh, ids = _vertices_by_id(built["dir"] / "out")
    assert set(ids) == {"R0001", "R0002", "R0003", "R0004", "R0005", "R0006", "R0007"}
    x, y = Transformer.from_crs(4326, 4548, always_xy=True).transform(llh[:, 0], llh[:, 1])
    h_ortho = llh[:, 2] - geoid_undulation(llh[:, 0], llh[:, 1])
    ground_road = ids != "R0004"
    on_plane = ground_road & ~((x > VALLEY[0] - 4) & (x < VALLEY[1] + 4))
    assert np.abs(h_ortho[on_plane] - (dem_plane(x, y)[on_plane] + ROAD_LIFT_M)).max() < 0.05
    bridge = ids == "R0004"
    x0, x1 = X0 + 200, X0 + 260
    ends = dem_plane(np.array([x0, x1]), np.array([Y0, Y0]))
    top = ends[0] + (ends[1] - ends[0]) * (x[bridge] - x0) / (x1 - x0) + DECK
    dz = h_ortho[bridge] - top
    assert dz.min() > -DECK_THICKNESS_M - 0.05 and dz.max() < 1.1 + 0.05
    deck_top = np.abs(dz) < 0.05
    over_valley = (x[bridge] > VALLEY[0]) & (x[bridge] < VALLEY[1])
    assert (deck_top & over_valley).any()  # a smooth deck over the valley, not down in it


@pytest.mark.skipif(not validator_available(), reason="gltf-validator not installed")
def test_glb_validator_clean(built: dict) -> None:
    reports = validate_glb_files(all_contents(built["dir"] / "out" / "tileset.json"))
    assert reports and all(r["numErrors"] == 0 and r["numWarnings"] == 0 for r in reports), reports[0]
