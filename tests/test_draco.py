"""Draco-compressed buildings (KHR_draco_mesh_compression, tiles/draco.py): the compressed tiles
decode back to the uncompressed tiles' vertices within the quantisation step and to the same
feature ids and property tables; the Khronos glTF validator and `onemap tiles validate` pass."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from scipy.spatial import cKDTree

from pipelines.buildings import BuildingOptions, build_buildings
from tiles import draco
from tiles.gltf import FeatureTable, MeshData, PropertyColumn, encode_mesh_glb
from tiles.gltf_read import read_glb
from tiles.gltf_validator import validate_glb_files, validator_available
from tiles.validate import validate_path

X0, Y0 = 536_000.0, 3_644_000.0  # EPSG:4548, Jiefang Street


def _boxes(n: int) -> MeshData:
    """n axis-aligned boxes (12 triangles each, unshared vertices) with feature ids 0..n-1."""
    corners = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], np.float64)
    faces = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                      [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
    pos, nrm, fid = [], [], []
    for i in range(n):
        v = corners * [8 + i, 12.0, 6 + 2 * i] + [i * 20.0, 30.0, -40.0]
        tri = v[faces]
        n_face = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        pos.append(tri.reshape(-1, 3))
        nrm.append(np.repeat(n_face / np.linalg.norm(n_face, axis=1, keepdims=True), 3, axis=0))
        fid.append(np.full(36, i))
    positions = np.concatenate(pos).astype(np.float32)
    colors = np.tile(np.array([[210, 180, 140, 255]], np.uint8), (len(positions), 1))
    return MeshData(positions, np.arange(len(positions), dtype=np.uint32), np.concatenate(nrm).astype(np.float32),
                    colors, np.concatenate(fid).astype(np.float32))


def _triangles(glb) -> set[tuple]:
    """Every triangle as (feature id, its three corners rounded to 1 cm, sorted)."""
    pos, fid, tri = glb.attribute("POSITION"), glb.attribute("_FEATURE_ID_0"), glb.indices().reshape(-1, 3)
    return {(int(fid[t[0]]), *sorted(tuple(np.round(pos[k], 2)) for k in t)) for t in tri}


def test_draco_round_trip_mesh() -> None:
    mesh = _boxes(12)
    table = FeatureTable("building", {"id": PropertyColumn([f"B{i}" for i in range(12)], "STRING")})
    raw = read_glb(encode_mesh_glb(mesh, table, quantize_normals=True))
    data = encode_mesh_glb(mesh, table, compress="draco")
    glb = read_glb(data)
    prim = glb.primitives()[0]
    assert "KHR_draco_mesh_compression" in prim["extensions"] and "EXT_mesh_features" in prim["extensions"]
    assert glb.json["extensionsRequired"] == ["KHR_draco_mesh_compression"]
    assert set(prim["extensions"]["KHR_draco_mesh_compression"]["attributes"]) == {
        "POSITION", "NORMAL", "COLOR_0", "_FEATURE_ID_0"}
    assert all("bufferView" not in glb.json["accessors"][a] for a in prim["attributes"].values())
    # every decoded vertex lies within the quantisation step of an input vertex of the same feature
    tol = draco.position_tolerance(mesh.positions) + 1e-4
    pos, fid = glb.attribute("POSITION"), glb.attribute("_FEATURE_ID_0")
    assert set(np.unique(fid)) == set(range(12)) and np.array_equal(fid, np.round(fid))
    for i in range(12):
        src = mesh.positions[mesh.feature_ids == i]
        dist, _ = cKDTree(src).query(pos[fid == i])
        assert dist.max() <= tol * np.sqrt(3), (i, dist.max(), tol)
        dist_back, _ = cKDTree(pos[fid == i]).query(src)
        assert dist_back.max() <= tol * np.sqrt(3)
    # the same triangles, feature by feature; normals unit length and close to the faces'
    assert _triangles(glb) == _triangles(raw)
    nrm = glb.attribute("NORMAL")
    assert np.allclose(np.linalg.norm(nrm, axis=1), 1.0, atol=2e-3)
    assert glb.attribute("COLOR_0").min() > 0.5  # normalised uint8 decoded to [0, 1]
    assert glb.property_table()["id"] == [f"B{i}" for i in range(12)]
    assert len(data) < len(encode_mesh_glb(mesh, table, quantize_normals=True)) / 2


def test_unknown_compression_is_refused() -> None:
    with pytest.raises(ValueError, match="compress"):
        encode_mesh_glb(_boxes(1), compress="zip")


@pytest.fixture(scope="module")
def footprints(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 buildings on a 6 x 8 grid, mixed roofs, delivered in EPSG:4548."""
    rng = np.random.default_rng(3)
    rows = []
    for k in range(48):
        x, y = X0 + (k % 6) * 30.0, Y0 + (k // 6) * 28.0
        rows.append({"id": f"B{k:03d}", "name": f"楼{k}", "height": float(rng.uniform(6, 60)), "floors": None,
                     "use": "residential", "roof_type": ["flat", "gable", "hip"][k % 3], "community": "C01",
                     "geometry": shapely.box(x, y, x + rng.uniform(10, 22), y + rng.uniform(9, 20))})
    path = tmp_path_factory.mktemp("src") / "buildings.gpkg"
    gpd.GeoDataFrame(rows, geometry="geometry", crs="EPSG:4548").to_file(path, layer="buildings")
    return path


def _tiles(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted((out / "tiles").rglob("*.glb"))}


def test_buildings_compress_draco(footprints: Path, tmp_path: Path) -> None:
    plain = build_buildings(footprints, tmp_path / "none", BuildingOptions(workers=1, max_features=10))
    packed = build_buildings(footprints, tmp_path / "draco", BuildingOptions(workers=1, max_features=10,
                                                                             compress="draco"))
    a, b = _tiles(tmp_path / "none"), _tiles(tmp_path / "draco")
    assert a.keys() == b.keys() and len(a) > 1
    for name in a:
        raw, dra = read_glb(a[name]), read_glb(b[name])
        assert "KHR_draco_mesh_compression" in dra.primitives()[0]["extensions"]
        assert dra.property_table() == raw.property_table()
        fr, fd = raw.attribute("_FEATURE_ID_0"), dra.attribute("_FEATURE_ID_0")
        assert set(np.unique(fd)) == set(np.unique(fr))
        pr, pd_ = raw.attribute("POSITION").astype(np.float64), dra.attribute("POSITION").astype(np.float64)
        tol = draco.position_tolerance(pr) * np.sqrt(3) + 1e-4
        for f in np.unique(fr):
            dist, _ = cKDTree(pr[fr == f]).query(pd_[fd == f])
            back, _ = cKDTree(pd_[fd == f]).query(pr[fr == f])
            assert max(dist.max(), back.max()) <= tol, (name, f, dist.max(), back.max(), tol)
    # the report: bytes per building as written and uncompressed
    rep = json.loads((tmp_path / "draco" / "report.json").read_text(encoding="utf-8"))["output"]
    assert rep["compress"] == "draco" and rep["raw_bytes"] == plain.bytes
    assert rep["bytes_per_building"] == pytest.approx(packed.bytes / 48, abs=0.1)
    assert rep["raw_bytes_per_building"] == pytest.approx(plain.bytes / 48, abs=0.1)
    assert rep["bytes_per_building"] < 0.75 * rep["raw_bytes_per_building"]  # tiny tiles: metadata dominates
    assert packed.summary()["bytes_per_building"] == rep["bytes_per_building"]
    # onemap tiles validate: geometry decoded (no "accessor bounds" fallback), glTF validator clean
    report = validate_path(tmp_path / "draco", gltf=validator_available())
    assert report.ok, report.summary()
    assert not any("accessor bounds" in i.message for i in report.issues)


@pytest.mark.skipif(not validator_available(), reason="node_modules/gltf-validator not installed (npm ci)")
def test_gltf_validator_on_draco(tmp_path: Path) -> None:
    table = FeatureTable("building", {"id": PropertyColumn([f"B{i}" for i in range(5)], "STRING")})
    path = tmp_path / "d.glb"
    path.write_bytes(encode_mesh_glb(_boxes(5), table, compress="draco"))
    (rep,) = validate_glb_files([path])
    assert rep["numErrors"] == 0 and rep["numWarnings"] == 0, rep
