"""Street furniture tiles: exact placement, headings, metadata, thinning, validation, accounting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.frames import ecef_to_lonlat_ellipsoidal, geoid_undulation, projected_to_lonlat
from pipelines.furniture import FurnitureOptions, build_furniture
from pipelines.instanced import meridian_convergence
from tests.tiles_fixtures import (
    X0,
    Y0,
    all_contents,
    dem_plane,
    enu_to_ecef,
    horizontal_error_m,
    leaf_contents,
    root_matrix,
    tileset_errors,
    write_boundary,
    write_dem,
    write_points,
)
from tiles.gltf_validator import validate_glb_files, validator_available
from tiles.instancing import decode_instanced_glb, enu_rotations
from tiles.models import FURNITURE_TYPES

N_GOOD = 1200


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict:
    d = tmp_path_factory.mktemp("furniture")
    write_dem(d / "dem.tif")
    write_boundary(d / "boundary.gpkg")
    rng = np.random.default_rng(5)
    rows = []
    for i in range(N_GOOD):
        kind = FURNITURE_TYPES[i % len(FURNITURE_TYPES)] if i >= 3 else "sculpture"
        rows.append(dict(id=f"F{i:06d}", type=kind, heading=float(rng.uniform(0, 360)),
                         height=float(rng.uniform(3.0, 12.0)) if kind == "sculpture" else None,
                         name="雕塑" if kind == "sculpture" else None, road_id="R0001",
                         x=X0 + float(rng.uniform(-500, 500)), y=Y0 + float(rng.uniform(-500, 500))))
    rows[10]["heading"] = 90.0
    bad = [
        dict(rows[20], id="F900001"),  # exact copy of F000020 apart from the id → duplicate
        dict(id="F900002", type="ufo", heading=0.0, height=1.0, name=None, road_id=None, x=X0, y=Y0),
        dict(id="F900003", type="bench", heading=0.0, height=900.0, name=None, road_id=None, x=X0, y=Y0),
        dict(id="F900004", type="bench", heading=0.0, height=1.0, name=None, road_id=None, x=X0 + 3000, y=Y0),
        dict(id="F900005", type="bench", heading=0.0, height="abc", name=None, road_id=None, x=X0, y=Y0 + 1),
    ]
    src_rows = [dict(r) for r in rows] + bad
    for r in src_rows:
        r["height"] = None if r["height"] is None else str(r["height"])
    write_points(d / "furniture.gpkg", "furniture", src_rows)
    result = build_furniture(d / "furniture.gpkg", d / "out", FurnitureOptions(dem=d / "dem.tif", max_per_leaf=400))
    return {"dir": d, "rows": rows, "result": result}


def _decode_leaves(out: Path) -> tuple[list, list]:
    instances, tables = [], []
    for p in leaf_contents(out / "tileset.json"):
        inst, table = decode_instanced_glb(p.read_bytes())
        instances.append(inst)
        tables.append(table)
    return instances, tables


def test_report_counts_add_up_with_bad_points(built: dict) -> None:
    report = built["result"].report
    c = report.counts
    assert c["input"] == N_GOOD + 5
    assert c["written"] + c["rejected"] == c["input"]
    assert c["written"] == N_GOOD
    codes = {i.id: i.code for i in report.rejected.values()}
    assert codes == {"F900001": "duplicate", "F900002": "unknown_type", "F900003": "absurd_height",
                     "F900004": "outside_boundary", "F900005": "unparsable_value"}
    assert (built["dir"] / "out" / "report.json").exists() and (built["dir"] / "out" / "report.txt").exists()


def test_positions_round_trip_within_5cm(built: dict) -> None:
    out = built["dir"] / "out"
    m = root_matrix(out / "tileset.json")
    by_id = {r["id"]: r for r in built["rows"]}
    instances, tables = _decode_leaves(out)
    ids, enu = [], []
    for nodes, table in zip(instances, tables, strict=True):
        for node in nodes:
            ids += [table["id"][f] for f in node.feature_ids]
            enu.append(node.translations_enu)
    llh = ecef_to_lonlat_ellipsoidal(enu_to_ecef(m, np.vstack(enu)))
    x = np.array([by_id[i]["x"] for i in ids])
    y = np.array([by_id[i]["y"] for i in ids])
    lon, lat = projected_to_lonlat(x, y, "EPSG:4548")
    h_expected = dem_plane(x, y) + geoid_undulation(lon, lat)
    assert horizontal_error_m(llh[:, 0], llh[:, 1], lon, lat).max() < 0.05
    assert np.abs(llh[:, 2] - h_expected).max() < 0.05
    assert sorted(ids) == sorted(by_id)  # metadata ids equal the input ids, each once


def test_heading_rotation_is_true_north_corrected(built: dict) -> None:
    out = built["dir"] / "out"
    m = root_matrix(out / "tileset.json")
    row = built["rows"][10]
    instances, tables = _decode_leaves(out)
    for nodes, table in zip(instances, tables, strict=True):
        for node in nodes:
            for k, f in enumerate(node.feature_ids):
                if table["id"][f] != row["id"]:
                    continue
                forward_frame = node.rotations_enu[k] @ np.array([0.0, 1.0, 0.0])
                lon, lat = projected_to_lonlat(np.array([row["x"]]), np.array([row["y"]]), "EPSG:4548")
                local = enu_rotations(lon, lat)[0].T @ m[:3, :3] @ forward_frame
                bearing = np.degrees(np.arctan2(local[0], local[1]))
                expected = 90.0 + meridian_convergence(lon, lat)[0]
                assert abs(bearing - expected) < 0.01
                assert abs(local[2]) < 1e-6  # plumb: no tilt at its own point
                assert 0.1 < meridian_convergence(lon, lat)[0] < 0.4  # Jiefang Street is east of 117°E
                return
    pytest.fail("instance with heading 90 not found")


def test_sculptures_present_and_thinning_keeps_them(built: dict) -> None:
    out = built["dir"] / "out"
    root = all_contents(out / "tileset.json")[0]
    _, table = decode_instanced_glb(root.read_bytes())
    assert {"F000000", "F000001", "F000002"} <= set(table["id"])  # the three sculptures survive thinning
    assert len(table["id"]) < N_GOOD


def test_geometric_errors_measured_and_monotonic(built: dict) -> None:
    errors = tileset_errors(built["dir"] / "out" / "tileset.json")
    assert len(errors) > 1
    for error, children in errors:
        assert all(error >= c for c in children)
        if not children:
            assert error == 0.0
    assert 0 < errors[0][0] < 60


@pytest.mark.skipif(not validator_available(), reason="gltf-validator not installed")
def test_glb_validator_clean(built: dict) -> None:
    reports = validate_glb_files(all_contents(built["dir"] / "out" / "tileset.json"))
    assert reports and all(r["numErrors"] == 0 and r["numWarnings"] == 0 for r in reports), reports[0]
