"""tiles/validate.py, tiles/formats, tiles/terrain_checks: pass good tilesets and terrain, catch broken ones."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from core.frames import EnuFrame, enu_to_gltf
from pipelines.dem import ellipsoidal_height_range
from tiles.gltf import FeatureTable, MeshData, PropertyColumn, encode_mesh_glb
from tiles.gltf_read import read_glb
from tiles.gltf_validator import validator_available
from tiles.validate import validate_path
from tiles.volumes import volume_excess

LON, LAT = 117.39, 32.93
needs_node = pytest.mark.skipif(not validator_available(), reason="npm gltf-validator not installed")


# ------------------------------------------------------------------------------ builders
def cube_glb() -> bytes:
    """A 10 x 10 x 5 m box from ENU (0, 0, 0), two features (lower / upper vertices)."""
    enu = np.array([[x, y, z] for z in (0.0, 5.0) for y in (0.0, 10.0) for x in (0.0, 10.0)])
    faces = np.array([[0, 2, 1], [1, 2, 3], [4, 5, 6], [5, 7, 6], [0, 1, 4], [1, 5, 4],
                      [2, 6, 3], [3, 6, 7], [0, 4, 2], [2, 4, 6], [1, 3, 5], [3, 7, 5]])
    mesh = MeshData(positions=enu_to_gltf(enu).astype(np.float32),
                    indices=faces.reshape(-1).astype(np.uint32),
                    feature_ids=np.array([0, 0, 0, 0, 1, 1, 1, 1]))
    table = FeatureTable("box", {"name": PropertyColumn(["lower", "upper"], "STRING"),
                                 "height": PropertyColumn([0.0, 5.0], "FLOAT32")})
    return encode_mesh_glb(mesh, table)


def repack_glb(data: bytes, edit) -> bytes:
    glb = read_glb(data)
    edit(glb.json)
    js = json.dumps(glb.json, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 4)
    binary = glb.bin + b"\0" * (-len(glb.bin) % 4)
    total = 12 + 8 + len(js) + 8 + len(binary)
    return (struct.pack("<III", 0x46546C67, 2, total) + struct.pack("<II", len(js), 0x4E4F534A) + js
            + struct.pack("<II", len(binary), 0x004E4942) + binary)


def box_volume(centre=(5.0, 5.0, 2.5), half=(5.0, 5.0, 2.5)) -> dict:
    return {"box": [*centre, half[0], 0, 0, 0, half[1], 0, 0, 0, half[2]]}


def write_tileset(d: Path, content: bytes, *, name: str = "a.glb", child_volume: dict | None = None,
                  child_error: float = 0.0, root_extra: dict | None = None) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "tiles").mkdir(exist_ok=True)
    (d / "tiles" / name).write_bytes(content)
    frame = EnuFrame.at_lonlat(LON, LAT, 10.0)
    ts = {
        "asset": {"version": "1.1"},
        "geometricError": 200.0,
        "root": {
            "transform": frame.tileset_transform(),
            "boundingVolume": box_volume((5.0, 5.0, 2.5), (50.0, 50.0, 10.0)),
            "geometricError": 100.0,
            "refine": "REPLACE",
            "children": [{
                "boundingVolume": child_volume or box_volume(),
                "geometricError": child_error,
                "content": {"uri": f"tiles/{name}"},
            }],
            **(root_extra or {}),
        },
    }
    (d / "tileset.json").write_text(json.dumps(ts))
    return d


def pnts_bytes(points: np.ndarray, rtc=(0.0, 0.0, 0.0), declared: int | None = None) -> bytes:
    n = len(points)
    ft = {"POINTS_LENGTH": declared if declared is not None else n, "POSITION": {"byteOffset": 0},
          "RTC_CENTER": list(rtc)}
    js = json.dumps(ft).encode()
    js += b" " * (-(28 + len(js)) % 8)
    body = points.astype("<f4").tobytes()
    body += b"\0" * (-len(body) % 8)
    total = 28 + len(js) + len(body)
    return struct.pack("<4s6I", b"pnts", 1, total, len(js), len(body), 0, 0) + js + body


def messages(report) -> str:
    return "\n".join(str(i) for i in report.issues)


# ------------------------------------------------------------------------------ tilesets
def test_good_tileset_passes(tmp_path: Path) -> None:
    d = write_tileset(tmp_path / "good", cube_glb())
    report = validate_path(d, gltf=validator_available())
    assert report.ok, messages(report)
    assert report.tilesets == 1 and report.tiles == 2 and report.contents == 1
    if validator_available():
        assert report.glbs == 1


def test_content_outside_its_box(tmp_path: Path) -> None:
    d = write_tileset(tmp_path / "shifted", cube_glb(), child_volume=box_volume((105.0, 5.0, 2.5)))
    report = validate_path(d, gltf=False)
    assert not report.ok
    assert "outside the tile boundingVolume" in messages(report)


def test_increasing_geometric_error(tmp_path: Path) -> None:
    d = write_tileset(tmp_path / "ge", cube_glb(), child_error=150.0)
    report = validate_path(d, gltf=False)
    assert any("geometricError 150.0 > parent's 100.0" in i.message for i in report.errors), messages(report)


def test_schema_violation(tmp_path: Path) -> None:
    d = write_tileset(tmp_path / "schema", cube_glb(), child_volume={"box": [0.0] * 11})
    report = validate_path(d, gltf=False)
    schema = [i for i in report.errors if i.message.startswith("schema:") and "box" in i.message]
    assert schema, messages(report)
    # missing asset
    ts = json.loads((d / "tileset.json").read_text())
    del ts["asset"]
    (d / "tileset.json").write_text(json.dumps(ts))
    assert "'asset' is a required property" in messages(validate_path(d, gltf=False))


def test_missing_content_uri(tmp_path: Path) -> None:
    d = write_tileset(tmp_path / "missing", cube_glb())
    (d / "tiles" / "a.glb").unlink()
    report = validate_path(d, gltf=False)
    assert "does not resolve" in messages(report) and not report.ok


@needs_node
def test_bad_glb_caught_by_gltf_validator(tmp_path: Path) -> None:
    def drop_bounds(js: dict) -> None:
        pos = js["meshes"][0]["primitives"][0]["attributes"]["POSITION"]
        js["accessors"][pos].pop("min")
        js["accessors"][pos].pop("max")

    d = write_tileset(tmp_path / "badglb", repack_glb(cube_glb(), drop_bounds))
    report = validate_path(d, gltf=True)
    assert any("glTF validator" in i.message for i in report.errors), messages(report)


def test_feature_count_larger_than_property_table(tmp_path: Path) -> None:
    def inflate(js: dict) -> None:
        features = js["meshes"][0]["primitives"][0]["extensions"]["EXT_mesh_features"]
        features["featureIds"][0]["featureCount"] = 5

    d = write_tileset(tmp_path / "meta", repack_glb(cube_glb(), inflate))
    report = validate_path(d, gltf=False)
    assert "featureCount 5 > propertyTables[0].count 2" in messages(report)


def test_pnts_region_and_sphere_volumes(tmp_path: Path) -> None:
    pts = np.array([[0.0, 0.0, 0.0], [10.0, 10.0, 3.0], [-5.0, 4.0, 1.0]])
    data = pnts_bytes(pts - 1.0, rtc=(1.0, 1.0, 1.0))
    lat_r, lon_r = np.radians(LAT), np.radians(LON)
    region = {"region": [lon_r - 1e-5, lat_r - 1e-5, lon_r + 1e-5, lat_r + 1e-5, 5.0, 20.0]}
    d = write_tileset(tmp_path / "region", data, name="p.pnts", child_volume=region)
    assert validate_path(d, gltf=False).ok
    far = {"region": [lon_r + 1e-4, lat_r, lon_r + 2e-4, lat_r + 1e-5, 5.0, 20.0]}
    d2 = write_tileset(tmp_path / "region_far", data, name="p.pnts", child_volume=far)
    assert "outside the tile boundingVolume" in messages(validate_path(d2, gltf=False))
    d3 = write_tileset(tmp_path / "sphere", data, name="p.pnts", child_volume={"sphere": [0, 0, 0, 2.0]})
    assert "outside the tile boundingVolume" in messages(validate_path(d3, gltf=False))


def test_broken_binary_headers(tmp_path: Path) -> None:
    pts = np.zeros((4, 3))
    d = write_tileset(tmp_path / "pnts", pnts_bytes(pts, declared=400), name="p.pnts")
    assert "POSITION runs past the binary body" in messages(validate_path(d, gltf=False))
    glb = cube_glb()
    ft = b'{"BATCH_LENGTH":2}'
    ft += b" " * (-(28 + len(ft)) % 8)
    b3dm = struct.pack("<4s6I", b"b3dm", 1, 28 + len(ft) + len(glb) + 8, len(ft), 0, 0, 0) + ft + glb
    d2 = write_tileset(tmp_path / "b3dm", b3dm, name="a.b3dm")
    assert "byteLength" in messages(validate_path(d2, gltf=False))


def test_volume_excess_box_axes() -> None:
    vol = {"box": [0, 0, 0, 0, 2, 0, -3, 0, 0, 0, 0, 1]}  # rotated: x-half-axis points along +y
    inside = np.array([[2.9, 1.9, 0.9], [-3.0, -2.0, -1.0]])
    assert volume_excess(vol, inside, np.eye(4)) == (0.0, 0)
    excess, n_out = volume_excess(vol, np.array([[0.0, 2.5, 0.0]]), np.eye(4))
    assert n_out == 1 and excess == pytest.approx(0.5)


# ------------------------------------------------------------------------------ terrain
@pytest.fixture(scope="module")
def terrain_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipelines.terrain import TerrainOptions, build_terrain
    from tests.test_terrain import write_dem

    d = tmp_path_factory.mktemp("vterrain")
    build_terrain(write_dem(d / "dem.tif"), d / "terrain", TerrainOptions(max_level=14))
    return d


def test_good_terrain_passes(terrain_dir: Path) -> None:
    report = validate_path(terrain_dir / "terrain")
    assert report.ok, messages(report)
    assert report.terrain_tiles > 15
    report = validate_path(terrain_dir / "terrain",
                           height_range=ellipsoidal_height_range(terrain_dir / "dem.tif"))
    assert report.ok, messages(report)


def test_broken_terrain(terrain_dir: Path, tmp_path: Path) -> None:
    d = tmp_path / "t"
    shutil.copytree(terrain_dir / "terrain", d)
    tiles = sorted(d.glob("14/*/*.terrain"))
    tiles[0].unlink()
    tiles[1].write_bytes(tiles[1].read_bytes()[:200])
    layer = json.loads((d / "layer.json").read_text())
    layer["scheme"] = "slippyMap"
    layer["available"][3] = [{"startX": 0, "startY": 0, "endX": 0, "endY": 0}]
    layer["onemap"]["height_range_ellipsoidal"] = [100.0, 120.0]
    (d / "layer.json").write_text(json.dumps(layer))
    text = messages(validate_path(d))
    assert "declared available in layer.json but missing" in text
    assert "cannot decode" in text
    assert "Cesium reads only 'tms'" in text
    assert "its parent is not" in text
    assert "outside the expected ellipsoidal range" in text


# ------------------------------------------------------------------------------ quantized content
def quantized_cube_glb() -> bytes:
    """KHR_mesh_quantization: POSITION normalized SHORT in [0, 1] (node scale 10 x 5 x 10 makes it
    the 10 x 10 x 5 m ENU box of :func:`cube_glb`), NORMAL normalized BYTE."""
    from tiles.gltf import ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER, GlbBuilder

    enu01 = np.array([[x, y, z] for z in (0.0, 1.0) for y in (0.0, 1.0) for x in (0.0, 1.0)])
    q = np.round(enu_to_gltf(enu01) * 32767).astype(np.int16)  # y-up: z in [-32767, 0]
    b = GlbBuilder()
    padded = np.zeros((len(q), 4), np.int16)  # vertex attributes are 4-byte aligned: stride 8
    padded[:, :3] = q
    view = b.add_view(padded, target=ARRAY_BUFFER, stride=8)
    b.gltf["accessors"].append({"bufferView": view, "componentType": 5122, "normalized": True,
                                "count": len(q), "type": "VEC3",
                                "min": q.min(axis=0).tolist(), "max": q.max(axis=0).tolist()})
    pos = len(b.gltf["accessors"]) - 1
    normals = enu_to_gltf(enu01 - 0.5)
    normals = normals / np.linalg.norm(normals, axis=1, keepdims=True)
    nrm = b.add_packed_vec3(np.round(normals * 127).astype(np.int8))
    faces = np.array([[0, 2, 1], [1, 2, 3], [4, 5, 6], [5, 7, 6], [0, 1, 4], [1, 5, 4],
                      [2, 6, 3], [3, 6, 7], [0, 4, 2], [2, 4, 6], [1, 3, 5], [3, 7, 5]])
    idx = b.add_accessor(faces.reshape(-1).astype(np.uint16), target=ELEMENT_ARRAY_BUFFER)
    b.use_extension("KHR_mesh_quantization")
    b.required_extensions.add("KHR_mesh_quantization")
    b.gltf.update({"scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0, "scale": [10.0, 5.0, 10.0]}],
                   "meshes": [{"primitives": [{"attributes": {"POSITION": pos, "NORMAL": nrm},
                                               "indices": idx, "mode": 4}]}]})
    return b.to_bytes()


def test_quantized_values_are_dequantized_once(tmp_path: Path) -> None:
    from tiles.formats import glb_positions

    data = quantized_cube_glb()
    glb = read_glb(data)
    prim = glb.primitives()[0]["attributes"]
    positions = glb.accessor(prim["POSITION"])
    assert positions.max() == 1.0 and positions.min() == -1.0  # 32767 → 1.0, not 3.05e-5
    assert np.allclose(np.linalg.norm(glb.accessor(prim["NORMAL"]), axis=1), 1.0, atol=0.02)
    # the validator's reading of the content: node scale applied to the dequantized values
    points = glb_positions(data).points
    assert np.allclose(points.min(axis=0), [0.0, 0.0, -10.0]) and np.allclose(points.max(axis=0), [10.0, 5.0, 0.0])
    # the right box passes (glTF validator included when installed) ...
    good = validate_path(write_tileset(tmp_path / "q", data), gltf=validator_available())
    assert good.ok, messages(good)
    # ... and a box 1 m too small on each side is caught by the real extent (the old double
    # dequantization read a 3 mm cube near the origin and missed this)
    small = write_tileset(tmp_path / "q_small", data,
                          child_volume=box_volume((5.0, 5.0, 2.5), (4.0, 4.0, 1.5)))
    text = messages(validate_path(small, gltf=False))
    assert "outside the tile boundingVolume, by up to 1.000 m" in text, text


# ------------------------------------------------------------------------------ issue 11 item 2
def test_optional_attribute_empty_for_every_feature_is_valid(tmp_path: Path) -> None:
    """A tile whose optional string (and number) attributes are null for every building: no
    zero-length bufferView (Khronos: 'byteLength: Value 0 is out of range'), 0 errors."""
    cube = read_glb(cube_glb())
    mesh = MeshData(positions=cube.attribute("POSITION").astype(np.float32), indices=cube.indices(),
                    feature_ids=np.array([0, 0, 0, 0, 1, 1, 1, 1]))
    table = FeatureTable("building", {  # the columns of pipelines.buildings.feature_table
        "id": PropertyColumn(["b1", "b2"], "STRING", required=True),
        "name": PropertyColumn([None, None], "STRING", no_data=""),
        "use": PropertyColumn(["", float("nan")], "STRING", no_data=""),
        "floors": PropertyColumn([None, None], "UINT16", no_data=0),
        "height": PropertyColumn([3.0, 6.0], "FLOAT32", required=True),
    })
    data = encode_mesh_glb(mesh, table, quantize_normals=True)
    glb = read_glb(data)
    assert all(v["byteLength"] > 0 for v in glb.json["bufferViews"])
    meta = glb.json["extensions"]["EXT_structural_metadata"]
    assert set(meta["schema"]["classes"]["building"]["properties"]) == {"id", "name", "use", "floors", "height"}
    assert "name" not in meta["propertyTables"][0]["properties"]  # omitted: every value is noData
    assert glb.property_table() == {"name": ["", ""], "use": ["", ""], "id": ["b1", "b2"],
                                    "floors": [0, 0], "height": [3.0, 6.0]}
    report = validate_path(write_tileset(tmp_path / "empty_attr", data), gltf=validator_available())
    assert report.ok and not report.warnings, messages(report)
    if validator_available():
        assert report.glbs == 1  # the Khronos validator ran on it
