"""Reality meshes -> 3D Tiles (pipelines/mesh.py): placement, measured LOD errors, validation,
incremental rebuilds, single-file input, Draco compression. Uses 2 x 2 tiles of the sample's OBJ export."""

from __future__ import annotations

import io
import re
import shutil
import struct
from pathlib import Path

import DracoPy
import numpy as np
import orjson
import pytest
import trimesh
from PIL import Image
from scipy.spatial import cKDTree

from core.errors import InputError
from core.frames import ecef_to_lonlat_ellipsoidal, geoid_undulation, gltf_to_enu, projected_orthometric_to_ecef
from pipelines.mesh import MeshOptions, build_mesh
from pipelines.mesh_sources import read_metadata
from tiles.gltf_read import read_glb
from tiles.mesh_lod import LodMesh, measured_error
from tiles.validate import validate_path

TILES = ("Tile_+000_+000", "Tile_+001_+000", "Tile_+000_+001", "Tile_+001_+001")


@pytest.fixture(scope="module")
def export(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = sample_dir / "clean" / "mesh"
    dst = tmp_path_factory.mktemp("mesh-src") / "mesh"
    (dst / "Data").mkdir(parents=True)
    shutil.copy(src / "metadata.xml", dst / "metadata.xml")
    for name in TILES:
        shutil.copytree(src / "Data" / name, dst / "Data" / name)
    return dst


@pytest.fixture(scope="module")
def built(export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mesh-out") / "mesh"
    res = build_mesh(export, out)
    assert res.leaves == 4 and res.tiles == 5 and res.levels == 1
    return out


def _obj_vertices(path: Path) -> np.ndarray:
    text = path.read_text(encoding="ascii")
    rows = re.findall(r"^v (\S+) (\S+) (\S+)$", text, flags=re.M)
    return np.array(rows, float)


def _tileset(out: Path) -> dict:
    return orjson.loads((out / "tileset.json").read_bytes())


def _glb_ecef(out: Path, uri: str, transform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    glb = read_glb((out / uri).read_bytes())
    pos, faces = [], []
    off = 0
    for i in range(len(glb.primitives())):
        p = gltf_to_enu(glb.attribute("POSITION", i).astype(float))
        pos.append(p)
        faces.append(glb.indices(i).reshape(-1, 3) + off)
        off += len(p)
    enu = np.vstack(pos)
    ecef = enu @ transform[:3, :3].T + transform[:3, 3]
    return ecef, np.vstack(faces)


def _root_transform(doc: dict) -> np.ndarray:
    return np.asarray(doc["root"]["transform"], float).reshape(4, 4).T


def test_vertices_within_5cm_of_obj_after_ecef(built: Path, export: Path) -> None:
    doc = _tileset(built)
    crs, origin = read_metadata(export / "metadata.xml")
    obj = _obj_vertices(export / "Data" / TILES[0] / f"{TILES[0]}.obj") + np.array(origin)
    expected = projected_orthometric_to_ecef(obj[:, 0], obj[:, 1], obj[:, 2], crs)
    got, _ = _glb_ecef(built, "tiles/0/0_0.glb", _root_transform(doc))
    d_got, _ = cKDTree(expected).query(got)
    d_exp, _ = cKDTree(got).query(expected)
    assert d_got.max() < 0.05 and d_exp.max() < 0.05, (d_got.max(), d_exp.max())
    # heights are ellipsoidal: orthometric OBJ z + geoid N (EGM96), not the bare z
    llh = ecef_to_lonlat_ellipsoidal(got[:50])
    _d, idx = cKDTree(expected).query(got[:50])
    n = geoid_undulation(llh[:, 0], llh[:, 1])
    assert np.abs(llh[:, 2] - (obj[idx, 2] + n)).max() < 0.05
    assert np.abs(n).min() > 1.0  # the geoid really moved them


def _obj_surface_ecef(export: Path, names: tuple[str, ...]) -> trimesh.Trimesh:
    """The export tiles' OBJ triangles (read here, not through pipelines/mesh_sources) in ECEF."""
    crs, origin = read_metadata(export / "metadata.xml")
    verts, faces, off = [], [], 0
    for t in names:
        text = (export / "Data" / t / f"{t}.obj").read_text(encoding="ascii")
        v = np.array(re.findall(r"^v (\S+) (\S+) (\S+)$", text, flags=re.M), float) + np.array(origin)
        f = [[int(c.split("/")[0]) - 1 for c in line.split()] for line in re.findall(r"^f (.+)$", text, flags=re.M)]
        verts.append(projected_orthometric_to_ecef(v[:, 0], v[:, 1], v[:, 2], crs))
        faces.append(np.array(f) + off)
        off += len(v)
    return trimesh.Trimesh(np.vstack(verts), np.vstack(faces), process=False)


def test_simplified_level_error_within_geometric_error(built: Path, export: Path) -> None:
    """The root's geometricError bounds the real two-way distance between the OBJ surfaces and the
    simplified surface: 30,000 random points on each surface (not only vertices: a collapsed wall
    keeps its corners on the original surface) measured against the other."""
    doc = _tileset(built)
    root = doc["root"]
    transform = _root_transform(doc)
    assert root["children"] and root["geometricError"] > 0
    assert all(c["geometricError"] == 0 for c in root["children"])
    original = _obj_surface_ecef(export, TILES)
    ecef, faces = _glb_ecef(built, root["content"]["uri"], transform)
    n_leaf = sum(len(_glb_ecef(built, c["content"]["uri"], transform)[1]) for c in root["children"])
    assert len(faces) * 3 < n_leaf  # really simplified
    simplified = trimesh.Trimesh(ecef, faces, process=False)
    on_original = np.vstack([original.vertices, trimesh.sample.sample_surface(original, 30_000, seed=11)[0]])
    on_simplified = np.vstack([ecef, trimesh.sample.sample_surface(simplified, 30_000, seed=12)[0]])
    _c, d_orig, _t = trimesh.proximity.closest_point(simplified, on_original)
    _c, d_simp, _t = trimesh.proximity.closest_point(original, on_simplified)
    worst = max(d_orig.max(), d_simp.max())
    assert worst <= root["geometricError"] + 1e-3, (d_orig.max(), d_simp.max(), root["geometricError"])
    assert worst > 0.5 * root["geometricError"]  # measured, not a loose guess


def test_validates_with_gltf_validator(built: Path) -> None:
    report = validate_path(built, gltf=True)
    assert report.ok, report.summary()
    rep = orjson.loads((built / "report.json").read_bytes())
    assert rep["triangles_in"] > 0 and rep["bytes"] > 0 and rep["triangles_out_per_level"]["1"] > 0


def test_textures_and_halved_lod_textures(built: Path) -> None:
    leaf = read_glb((built / "tiles/0/0_0.glb").read_bytes())
    root = read_glb((built / "tiles/1/0_0.glb").read_bytes())
    assert len(leaf.json["images"]) == 2  # orthophoto cut + facade
    assert all("TEXCOORD_0" in p["attributes"] for p in leaf.primitives())
    assert "KHR_materials_unlit" in leaf.json["extensionsUsed"]

    def px(g) -> int:
        return sum(Image.open(io.BytesIO(g.view_bytes(im["bufferView"]))).size[0] for im in g.json["images"])

    assert px(root) < 4 * px(leaf)


def test_incremental_rebuild_reuses_unchanged_tiles(built: Path, export: Path, tmp_path: Path) -> None:
    src = tmp_path / "mesh"
    shutil.copytree(export, src)
    out = tmp_path / "out"
    first = build_mesh(src, out)
    again = build_mesh(src, out)
    assert again.tiles_reused == first.tiles
    jpg = src / "Data" / TILES[3] / f"{TILES[3]}_1.jpg"
    jpg.write_bytes(jpg.read_bytes() + b"\0")  # one leaf's texture changed
    third = build_mesh(src, out)
    assert third.tiles_reused == first.tiles - 2  # that leaf and the root rebuilt
    assert validate_path(out, gltf=False).ok


def test_single_obj_with_src_crs_and_origin(tmp_path: Path) -> None:
    xs, ys = np.meshgrid(np.arange(0, 61.0, 2), np.arange(0, 41.0, 2))
    z = 20 + 0.5 * np.sin(xs / 7)
    v = np.column_stack([xs.ravel(), ys.ravel(), z.ravel()])
    nx = xs.shape[1]
    i = (np.arange(xs.shape[0] - 1)[:, None] * nx + np.arange(nx - 1)[None, :]).ravel()
    f = np.vstack([np.column_stack([i, i + 1, i + nx + 1]), np.column_stack([i, i + nx + 1, i + nx])]) + 1
    obj = tmp_path / "site.obj"
    obj.write_text("".join(f"v {a:.3f} {b:.3f} {c:.3f}\n" for a, b, c in v)
                   + "".join(f"f {a} {b} {c}\n" for a, b, c in f))
    out = tmp_path / "out"
    res = build_mesh(obj, out, MeshOptions(src_crs="EPSG:4548", origin="536500,3644500,0", leaf_size=25))
    assert res.leaves == 6 and validate_path(out, gltf=False).ok
    with pytest.raises(InputError, match="--src-crs"):
        build_mesh(obj, tmp_path / "out2")
    assert not (tmp_path / "out2").exists()


def test_metadata_without_srs_is_an_input_error(tmp_path: Path) -> None:
    (tmp_path / "Data").mkdir()
    (tmp_path / "metadata.xml").write_text("<ModelMetadata><SRSOrigin>0,0,0</SRSOrigin></ModelMetadata>")
    with pytest.raises(InputError, match="metadata.xml"):
        build_mesh(tmp_path, tmp_path / "out")


# ------------------------------------------------------------------------------------ Draco
def _glb_chunks(path: Path) -> tuple[dict, bytes]:
    """The JSON and BIN chunks of a glb, parsed here (not through tiles.gltf_read)."""
    data = path.read_bytes()
    js_len = struct.unpack_from("<I", data, 12)[0]
    doc = orjson.loads(data[20:20 + js_len])
    bin_len = struct.unpack_from("<I", data, 20 + js_len)[0]
    return doc, data[28 + js_len:28 + js_len + bin_len]


def _draco_decoded(path: Path) -> list[dict[str, np.ndarray]]:
    """Every primitive of a Draco glb decoded with DracoPy directly: {semantic: values, "faces"}."""
    doc, binary = _glb_chunks(path)
    out = []
    for prim in doc["meshes"][0]["primitives"]:
        ext = prim["extensions"]["KHR_draco_mesh_compression"]
        view = doc["bufferViews"][ext["bufferView"]]
        start = view.get("byteOffset", 0)
        mesh = DracoPy.decode(binary[start:start + view["byteLength"]])
        by_id = {a["unique_id"]: np.asarray(a["data"]) for a in mesh.attributes}
        decoded = {sem: by_id[uid] for sem, uid in ext["attributes"].items()}
        decoded["faces"] = np.asarray(mesh.faces).reshape(-1, 3)
        out.append(decoded)
    return out


@pytest.fixture(scope="module")
def built_draco(export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mesh-draco") / "mesh"
    res = build_mesh(export, out, MeshOptions(compress="draco"))
    assert res.tiles == 5 and res.compress == "draco"
    return out


def test_draco_tiles_validate_and_carry_textured_primitives(built_draco: Path, built: Path) -> None:
    report = validate_path(built_draco, gltf=True)  # decodes every stream against its accessors
    assert report.ok and not report.warnings, report.summary()
    for uri in ("tiles/0/0_0.glb", "tiles/1/0_0.glb"):
        doc, _bin = _glb_chunks(built_draco / uri)
        assert doc["extensionsRequired"] == ["KHR_draco_mesh_compression"]
        for prim in doc["meshes"][0]["primitives"]:
            assert set(prim["attributes"]) == {"POSITION", "TEXCOORD_0"}
            assert all("bufferView" not in doc["accessors"][a] for a in prim["attributes"].values())
            assert "baseColorTexture" in doc["materials"][prim["material"]]["pbrMetallicRoughness"]
    rep = orjson.loads((built_draco / "report.json").read_bytes())
    plain = orjson.loads((built / "report.json").read_bytes())
    assert rep["compress"] == "draco" and rep["triangles_out_per_level"] == plain["triangles_out_per_level"]
    assert rep["plain_geometry_bytes_per_triangle_leaves"] == plain["geometry_bytes_per_triangle_leaves"]
    assert rep["geometry_bytes_per_triangle_leaves"] < rep["plain_geometry_bytes_per_triangle_leaves"] / 2
    assert rep["bytes"] < plain["bytes"]


def test_draco_vertices_within_5cm_of_obj_after_ecef(built_draco: Path, export: Path) -> None:
    doc = _tileset(built_draco)
    crs, origin = read_metadata(export / "metadata.xml")
    obj = _obj_vertices(export / "Data" / TILES[0] / f"{TILES[0]}.obj") + np.array(origin)
    expected = projected_orthometric_to_ecef(obj[:, 0], obj[:, 1], obj[:, 2], crs)
    transform = _root_transform(doc)
    enu = gltf_to_enu(np.vstack([p["POSITION"] for p in _draco_decoded(built_draco / "tiles/0/0_0.glb")]))
    got = enu.astype(float) @ transform[:3, :3].T + transform[:3, 3]
    d_got, _ = cKDTree(expected).query(got)
    d_exp, _ = cKDTree(got).query(expected)
    assert d_got.max() < 0.05 and d_exp.max() < 0.05, (d_got.max(), d_exp.max())


def test_draco_texture_coordinates_survive(built_draco: Path, built: Path) -> None:
    """Each decoded (position, uv) pair is one of the uncompressed tile's, within quantisation."""
    plain = read_glb((built / "tiles/0/0_0.glb").read_bytes())
    for i, dec in enumerate(_draco_decoded(built_draco / "tiles/0/0_0.glb")):
        ref = np.hstack([plain.attribute("POSITION", i), 100.0 * plain.attribute("TEXCOORD_0", i)])
        got = np.hstack([dec["POSITION"], 100.0 * dec["TEXCOORD_0"]])
        d, _ = cKDTree(ref).query(got)
        assert d.max() < 0.03, d.max()  # 16-bit positions (<= 2 mm here), 14-bit UVs (x 100)
        assert len(dec["faces"]) == len(plain.indices(i)) // 3


def test_validate_reports_a_draco_stream_that_disagrees_with_its_accessors(built_draco: Path,
                                                                          tmp_path: Path) -> None:
    out = tmp_path / "mesh"
    shutil.copytree(built_draco, out)
    glb = out / "tiles/0/0_0.glb"
    doc, binary = _glb_chunks(glb)
    doc["accessors"][doc["meshes"][0]["primitives"][0]["attributes"]["TEXCOORD_0"]]["count"] += 1
    js = orjson.dumps(doc)
    js += b" " * (-len(js) % 4)
    glb.write_bytes(struct.pack("<III", 0x46546C67, 2, 28 + len(js) + len(binary))
                    + struct.pack("<II", len(js), 0x4E4F534A) + js + struct.pack("<II", len(binary), 0x004E4942)
                    + binary)
    report = validate_path(out, gltf=False)
    assert not report.ok
    assert any("TEXCOORD_0 decodes to" in i.message for i in report.errors), report.summary()


def test_measured_error_covers_face_interiors() -> None:
    """A 10 m x 10 m wall on 10 m x 10 m of ground, simplified so that the wall's bottom corners
    collapse into one point: every vertex still lies on the other surface, yet a point of the
    original wall at height z above a bottom corner is min(z, (10 - z) / sqrt(5)) from the
    ground and the V, largest at z = 10 / (1 + sqrt(5)) = 3.09 m (computed here)."""
    ground = np.array([[0, -10, 0], [10, -10, 0], [10, 0, 0], [0, 0, 0]], float)
    wall = np.array([[0, 0, 0], [10, 0, 0], [10, 0, 10], [0, 0, 10]], float)
    original = [LodMesh(ground, np.array([[0, 1, 2], [0, 2, 3]])), LodMesh(wall, np.array([[0, 1, 2], [0, 2, 3]]))]
    v_wall = np.array([[0, 0, 10], [10, 0, 10], [5, 0, 0]], float)
    simplified = [LodMesh(ground, np.array([[0, 1, 2], [0, 2, 3]])), LodMesh(v_wall, np.array([[0, 1, 2]]))]
    vertices = np.vstack([ground, wall])
    expected = 10 / (1 + np.sqrt(5))  # z = (10 - z) / sqrt(5): as far from the ground as from the V's edge
    got = measured_error(vertices, simplified, original)
    assert expected <= got <= 1.03 * expected, got
    assert measured_error(vertices, simplified) == pytest.approx(0.0, abs=1e-9)  # vertices alone see nothing
