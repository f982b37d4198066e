"""Integration: the whole sample district (seed 7) through the real `onemap tiles` commands.

- `onemap tiles build` writes every layer plus terrain and the catalog, and `onemap tiles
  validate` passes on each layer;
- the building ids in the tiles are the delivery's ids (the keys PostGIS gets);
- the dirty delivery's reports match its manifest defect by defect, and nothing else is lost;
- the Shapefile whose .cpg lies about its encoding fails with an error that names the fix.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import pytest

from pipelines.buildings import BuildingOptions, build_buildings
from pipelines.furniture import FurnitureOptions, build_furniture
from pipelines.roads import RoadOptions, build_roads
from pipelines.vegetation import VegetationOptions, build_vegetation
from tiles.gltf_read import read_glb

REPO = Path(__file__).resolve().parent.parent
LAYERS = ("buildings", "roads", "vegetation", "furniture", "pointcloud", "terrain", "mesh")
#: manifest defects the pipelines repair rather than reject (feature kept, change reported)
REPAIRED = {("buildings.gpkg", "self_intersection"): "make_valid", ("trees.gpkg", "missing_height"): "default_height"}


def onemap(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "onemap.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_build_writes_every_layer_and_catalog(sample_tiles: Path, sample_dir: Path) -> None:
    catalog = json.loads((sample_tiles / "index.json").read_text())
    layers = {entry["name"]: entry for entry in catalog["layers"]}
    assert set(LAYERS) <= set(layers)
    for name in LAYERS:
        entry = layers[name]
        assert entry.get("ok", True) and not entry.get("error"), entry
        marker = "layer.json" if name == "terrain" else "tileset.json"
        assert (sample_tiles / name / marker).exists(), name
    clean = sample_dir / "clean"
    n_buildings = len(gpd.read_file(clean / "buildings.gpkg", columns=["id"]))
    n_furniture = len(gpd.read_file(clean / "furniture.gpkg", columns=["id"]))
    assert layers["buildings"]["features"] == n_buildings  # the clean delivery loses nothing
    assert layers["furniture"]["features"] == n_furniture
    assert layers["vegetation"]["features"] >= len(gpd.read_file(clean / "trees.gpkg", columns=["id"]))
    for name in LAYERS:
        assert layers[name]["bytes"] > 0, name


def test_build_writes_imagery_and_mesh(sample_tiles: Path) -> None:
    """OUT/imagery/ (TMS pyramid of clean/ortho.tif) and OUT/mesh/tileset.json, both in index.json."""
    from tiles.imagery import validate_imagery

    layers = {e["name"]: e for e in json.loads((sample_tiles / "index.json").read_text())["layers"]}
    assert layers["imagery"]["kind"] == "imagery" and layers["imagery"]["url"] == "/imagery/"
    assert layers["imagery"]["features"] > 0 and layers["imagery"]["maxzoom"] == 18
    assert (sample_tiles / "imagery" / "tilemapresource.xml").exists()
    assert validate_imagery(sample_tiles / "imagery") == []
    assert layers["mesh"]["kind"] == "3dtiles" and layers["mesh"]["url"] == "/tiles/mesh/tileset.json"
    assert (sample_tiles / "mesh" / "tileset.json").exists() and layers["mesh"]["features"] > 0


@pytest.mark.parametrize("layer", LAYERS)
def test_validate_passes_on_each_layer(sample_tiles: Path, layer: str) -> None:
    done = onemap("tiles", "validate", str(sample_tiles / layer))
    text = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 0, text[-4000:]
    assert text.startswith("OK ") and "; 0 errors" in text, text[-2000:]


def test_building_ids_in_tiles_are_the_delivery_ids(sample_tiles: Path, sample_dir: Path) -> None:
    ids: list[str] = []

    def leaves(tile: dict) -> list[dict]:
        kids = tile.get("children") or []
        return [tile] if not kids else [t for k in kids for t in leaves(k)]

    root = json.loads((sample_tiles / "buildings" / "tileset.json").read_text())["root"]
    for tile in leaves(root):
        glb = read_glb((sample_tiles / "buildings" / tile["content"]["uri"]).read_bytes())
        ids += [str(v) for v in glb.property_table()["id"]]
    delivered = gpd.read_file(sample_dir / "clean" / "buildings.gpkg", columns=["id"])["id"]
    assert sorted(ids) == sorted(delivered)


def test_dirty_reports_match_the_manifest(sample_dir: Path, tmp_path: Path) -> None:
    clean, dirty = sample_dir / "clean", sample_dir / "dirty"
    defects = json.loads((dirty / "manifest.json").read_text())["defects"]
    dem, boundary = clean / "dem.tif", clean / "boundary.gpkg"
    reports = {
        "buildings.gpkg": build_buildings(dirty / "buildings.gpkg", tmp_path / "b",
                                          BuildingOptions(dem=dem, boundary=boundary)).report,
        "roads.gpkg": build_roads(dirty / "roads.gpkg", tmp_path / "r",
                                  RoadOptions(dem=dem, boundary=boundary)).report,
        "trees.gpkg": build_vegetation(dirty / "trees.gpkg", tmp_path / "v",
                                       VegetationOptions(dem=dem, boundary=boundary)).reports[0],
        "furniture.gpkg": build_furniture(dirty / "furniture.gpkg", tmp_path / "f",
                                          FurnitureOptions(dem=dem, boundary=boundary)).report,
    }
    for file, report in reports.items():
        rejected = {issue.id: issue for issue in report.rejected.values()}
        repaired = {issues[0].id: {i.code for i in issues} for issues in report.repaired.values()}
        named = [d for d in defects if d["file"] == file and d["feature_id"]]
        assert named, file
        for d in named:
            fid, code = d["feature_id"], d["defect"]
            how = REPAIRED.get((file, code))
            if how:
                assert fid not in rejected and how in repaired.get(fid, set()), (file, d)
            else:
                assert fid in rejected and rejected[fid].code == code, (file, d, rejected.get(fid))
                issue = rejected[fid]
                assert file in issue.message and fid in issue.message, issue  # names file and feature
        # nothing valid is lost: only manifest features are rejected (plus roads wholly under
        # higher-ranked roads, which draw nothing and are accounted as 'covered'), counts add up
        covered = {fid for fid, issue in rejected.items() if issue.code == "covered"}
        assert set(rejected) - covered <= {d["feature_id"] for d in named}, file
        c = report.counts
        assert c["input"] == c["written"] + c["rejected"], (file, c)
        assert c["rejected"] == len(rejected)
    # the layer delivered in another CRS is reprojected as a whole and says so
    wrong_crs = [d for d in defects if d["defect"] == "wrong_crs"]
    assert [d["file"] for d in wrong_crs] == ["roads.gpkg"]
    roads = reports["roads.gpkg"]
    assert any(wrong_crs[0]["crs"] in note and "reprojected" in note for note in roads.notes), roads.notes
    n_roads = len(gpd.read_file(clean / "roads.gpkg", columns=["id"]))
    n_covered = roads.rejected_by_code().get("covered", 0)
    assert roads.counts["written"] + n_covered == n_roads  # every real road, in the right place


def test_wrong_encoding_is_a_clear_error_with_the_fix(sample_dir: Path, tmp_path: Path) -> None:
    shp = sample_dir / "dirty" / "buildings_shp" / "buildings.shp"
    mapping = REPO / "data" / "mappings" / "buildings_shp.yaml"
    dem = sample_dir / "clean" / "dem.tif"
    bad = onemap("tiles", "buildings", str(shp), "--out", str(tmp_path / "bad"), "--mapping", str(mapping),
                 "--dem", str(dem))
    assert bad.returncode != 0
    text = " ".join((bad.stdout + bad.stderr).split())
    assert "buildings.shp" in text and "GBK" in text and "--encoding UTF-8" in text, text[-2000:]
    assert "Traceback" not in text
    assert not (tmp_path / "bad" / "tileset.json").exists()
    good = onemap("tiles", "buildings", str(shp), "--out", str(tmp_path / "good"), "--mapping", str(mapping),
                  "--dem", str(dem), "--encoding", "UTF-8")
    assert good.returncode == 0, good.stdout[-3000:] + good.stderr[-3000:]
    report = json.loads((tmp_path / "good" / "report.json").read_text())
    n = len(gpd.read_file(sample_dir / "clean" / "buildings.gpkg", columns=["id"]))
    assert report["counts"]["written"] == n and report["counts"]["rejected"] == 0
