"""City scale (issue 14): roads, trees and furniture on the partitioned path
(pipelines/layer_partitions.py, layer_scale.py; the engine and work folder of pipelines/partitions.py
are the buildings' own, tested in tests/test_scale.py).

* per layer, in-process and ``--dask local:2`` write the same files, byte for byte (same ids,
  hierarchy, boxes and errors);
* per layer, the accounting (rejections and repairs: row, id, code, message) and the features drawn
  in the leaves are those of the one-piece build;
* each partition reads only its bounding box(es): the features it read are exactly those whose
  envelope meets them (counted independently), and every feature is owned by one partition;
* roads: a road wholly under a higher-ranked road owned by the neighbouring partition is still
  rejected ``covered``; a road crossing cells is drawn by each cell it crosses; duplicate ids
  across partitions are rejected as in one piece;
* a run killed mid-way (SIGKILL) resumes from the partitions already done and finishes identical
  (trees; the resume machinery is the one every layer shares);
* GeoParquet sources (bbox covering) partition like GeoPackages: the sample's roads give the same
  files, the synthetic roads and furniture the same accounting.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely
from shapely.geometry import LineString, Point

from pipelines.furniture import FurnitureOptions, build_furniture
from pipelines.roads import RoadOptions, build_roads
from pipelines.vegetation import VegetationOptions, build_vegetation
from tests.tiles_fixtures import leaf_contents
from tiles.gltf_read import read_glb

ROOT = Path(__file__).resolve().parent.parent
LEVEL = 2
LAYERS = ("roads", "trees", "furniture")
FILES = {"roads": "roads.gpkg", "trees": "trees.gpkg", "furniture": "furniture.gpkg"}


def _build(layer: str, src: Path, out: Path, level: int, dask: str | None = None, **kw: object) -> list:
    """Build one layer; its reports (vegetation: trees first)."""
    file = src / FILES[layer] if src.is_dir() else src
    folder = src if src.is_dir() else src.parent
    dem = kw.pop("dem", folder / "dem.tif")
    if layer == "roads":
        return [build_roads(file, out, RoadOptions(dem=dem, partition_level=level, dask=dask, **kw)).report]
    if layer == "furniture":
        return [build_furniture(file, out, FurnitureOptions(dem=dem, partition_level=level, dask=dask, **kw)).report]
    return build_vegetation(file, out, VegetationOptions(dem=dem, partition_level=level, dask=dask, **kw)).reports


def _files(out: Path) -> dict[str, str]:
    """sha1 of every published file but the run reports (they hold timings)."""
    return {str(p.relative_to(out)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file() and p.name not in ("report.json", "report.txt")}


def _accounting(report, rename: tuple[str, str] = ("", "")) -> tuple[set, set, dict]:  # noqa: ANN001
    d = report.to_dict()

    def msg(text: str) -> str:  # ``rename``: a file name in the messages replaced
        return text.replace(*rename) if rename[0] else text

    rejected = {(i["row"], i["id"], i["code"], msg(i["message"]), i.get("related_id")) for i in d["rejected"]}
    repaired = {(x["row"], x["id"], tuple(x["how"]), tuple(msg(i["message"]) for i in x["issues"]))
                for x in d["repaired"]}
    return rejected, repaired, d["counts"]


def _leaf_ids(tileset: Path) -> list[str]:
    """The feature ids drawn by the leaves (instances: once per instance; surfaces: once per tile)."""
    ids: list[str] = []
    for p in leaf_contents(tileset):
        table = read_glb(p.read_bytes()).property_table(0)
        ids += [str(v) for v in table["id"]]
    return ids


def _tileset(layer: str, out: Path) -> Path:
    return out / "trees" / "tileset.json" if layer == "trees" else out / "tileset.json"


@pytest.fixture(scope="module")
def clean(sample_dir: Path) -> Path:
    return sample_dir / "clean"


@pytest.fixture(scope="module")
def references(clean: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, list]]:
    """Per layer, the in-process partitioned build of the sample (level 2)."""
    base = tmp_path_factory.mktemp("layers")
    out = {}
    for layer in LAYERS:
        kw = {"green": clean / "green.gpkg", "water": clean / "water.gpkg"} if layer == "trees" else {}
        out[layer] = (base / layer, _build(layer, clean, base / layer, LEVEL, **kw))
    return out


@pytest.mark.parametrize("layer", LAYERS)
def test_dask_local_equals_in_process(layer: str, references: dict, clean: Path, tmp_path: Path) -> None:
    ref_out, ref = references[layer]
    parts = ref[0].output["partitions"]
    assert parts["level"] == LEVEL and parts["workers"] == 1 and parts["cells"] > 1
    kw = {"green": clean / "green.gpkg", "water": clean / "water.gpkg"} if layer == "trees" else {}
    out = tmp_path / "dask"
    reports = _build(layer, clean, out, LEVEL, dask="local:2", **kw)
    assert reports[0].output["partitions"]["workers"] == 2
    assert _files(out) == _files(ref_out)  # tiles, tileset.json (hierarchy, boxes, errors)
    assert [r.counts for r in reports] == [r.counts for r in ref]
    assert not list(tmp_path.glob("dask.partial-*")), "the work folder is removed once published"


@pytest.mark.parametrize("layer", LAYERS)
def test_partitioned_matches_one_piece(layer: str, references: dict, clean: Path, tmp_path: Path) -> None:
    """Same accounting and the same features in the leaves as the one-piece build."""
    ref_out, ref = references[layer]
    whole = _build(layer, clean, tmp_path / "whole", 0)
    assert "partitions" not in whole[0].output
    assert _accounting(ref[0]) == _accounting(whole[0])
    leaves, whole_leaves = _leaf_ids(_tileset(layer, ref_out)), _leaf_ids(_tileset(layer, tmp_path / "whole"))
    if layer == "roads":  # a road is drawn by every tile it crosses
        assert set(leaves) == set(whole_leaves)
        assert ref[0].output["road_area_m2"] == pytest.approx(whole[0].output["road_area_m2"], abs=0.5)
        assert ref[0].output["bridges"] == whole[0].output["bridges"]
    else:  # every instance in exactly one leaf
        assert sorted(leaves) == sorted(whole_leaves)
        assert len(leaves) == ref[0].counts["written"]
    if layer == "furniture":
        assert ref[0].output["by_type"] == whole[0].output["by_type"]


@pytest.mark.parametrize("layer", LAYERS)
def test_partition_reads_only_its_bbox(layer: str, references: dict, clean: Path) -> None:
    _, ref = references[layer]
    gdf = gpd.read_file(clean / FILES[layer])
    env = shapely.bounds(np.asarray(gdf.geometry.values, dtype=object))
    tasks = ref[0].output["partitions"]["tasks"]
    owned = 0
    for t in tasks:
        for r in t["reads"]:
            x0, y0, x1, y1 = r["bbox"]
            inside = int(np.sum((env[:, 0] <= x1) & (env[:, 2] >= x0) & (env[:, 1] <= y1) & (env[:, 3] >= y0)))
            assert r["read"] == inside, t
        assert t["reads"][0]["read"] < len(gdf)
        owned += t["owned"]
    assert owned == len(gdf)  # every feature owned by exactly one partition
    if layer != "roads":  # points: each read once (roads read a 101 m margin of context around a cell)
        assert sum(t["read"] for t in tasks) == len(gdf)


def test_roads_from_geoparquet_equal_geopackage(references: dict, clean: Path, tmp_path: Path) -> None:
    """The sample's roads as GeoParquet (bbox covering, row groups of 32, the GeoPackage's row
    order): the partitioned build writes the GeoPackage build's files byte for byte, the same
    accounting; every read (the cell + margin, then the owned roads' envelopes + margin) returns
    exactly the rows GDAL returned, skipping row groups and decoding only those rows."""
    ref_out, ref = references["roads"]
    src = tmp_path / "roads.parquet"
    gpd.read_file(clean / "roads.gpkg").to_parquet(src, write_covering_bbox=True, row_group_size=32)
    report = _build("roads", src, tmp_path / "out", LEVEL, dem=clean / "dem.tif")[0]
    assert report.output["partitions"]["level"] == LEVEL
    assert _files(tmp_path / "out") == _files(ref_out)
    rejected, repaired, counts = _accounting(report)
    assert rejected and (rejected, repaired, counts) == _accounting(ref[0], rename=("roads.gpkg", "roads.parquet"))
    ref_reads = {t["cell"]: [r["read"] for r in t["reads"]] for t in ref[0].output["partitions"]["tasks"]}
    skipped = 0
    for t in report.output["partitions"]["tasks"]:
        assert [r["read"] for r in t["reads"]] == ref_reads[t["cell"]]
        for r in t["reads"]:
            scan = r["scan"]
            assert scan["covering"] and scan["rows_returned"] == scan["rows_decoded"] == r["read"] < counts["input"]
            skipped += scan["row_groups_skipped"]
    assert skipped > 0


# ------------------------------------------------------------------------------------ synthetic roads
X0, Y0 = 535_000.0, 3_644_000.0  # EPSG:4548 metres


def _roads(path: Path) -> int:
    """Roads over 2 km (a 4 km root square: level 3 cells are 500 m). ``S-COVERED`` (service, on
    the cell edge y = 1000, its cell north of it) lies under ``P-LONG`` (primary, y = 990, in the
    cells south): the primary's envelope does not meet the service's cell, only the margin reads
    it. ``DUP`` twice, in cells far apart; ``P-LONG``, ``T-CROSS`` and the bridge cross cell edges;
    one row without geometry, one absurd width."""
    rows = [
        {"id": "P-LONG", "class": "primary", "width": 24.0, "bridge": 0,
         "geometry": LineString([(X0 + 20, Y0 + 990), (X0 + 900, Y0 + 990)])},
        {"id": "S-COVERED", "class": "service", "width": 2.0, "bridge": 0,
         "geometry": LineString([(X0 + 760, Y0 + 1000), (X0 + 780, Y0 + 1000)])},
        {"id": "T-CROSS", "class": "tertiary", "width": 10.0, "bridge": 0,
         "geometry": LineString([(X0 + 700, Y0 + 800), (X0 + 700, Y0 + 1300)])},
        {"id": "DUP", "class": "residential", "width": 6.0, "bridge": 0,
         "geometry": LineString([(X0 + 100, Y0 + 100), (X0 + 300, Y0 + 120)])},
        {"id": "BR", "class": "secondary", "width": 15.0, "bridge": 1, "deck_height": 7.0,
         "geometry": LineString([(X0 + 1400, Y0 + 1000), (X0 + 1600, Y0 + 1000)])},
        {"id": "R-WIDE", "class": "residential", "width": 500.0, "bridge": 0,
         "geometry": LineString([(X0 + 1200, Y0 + 1700), (X0 + 1300, Y0 + 1700)])},
        {"id": "R-NOGEOM", "class": "residential", "width": 6.0, "bridge": 0, "geometry": None},
        {"id": "DUP", "class": "service", "width": 4.0, "bridge": 0,
         "geometry": LineString([(X0 + 1800, Y0 + 1800), (X0 + 1990, Y0 + 1990)])},
    ]
    for i in range(12):  # filler, spread over the square
        gx, gy = i % 4, i // 4
        rows.append({"id": f"F{i:02d}", "class": "residential", "width": 6.0, "bridge": 0,
                     "geometry": LineString([(X0 + gx * 600 + 50, Y0 + gy * 650 + 330),
                                             (X0 + gx * 600 + 250, Y0 + gy * 650 + 340)])})
    gdf = gpd.GeoDataFrame(rows, crs="EPSG:4548")
    if path.suffix == ".parquet":  # GeoParquet: bbox covering, row groups of 4
        gdf.to_parquet(path, write_covering_bbox=True, row_group_size=4)
    else:
        gdf.to_file(path, layer="roads", driver="GPKG")
    return len(rows)


@pytest.mark.parametrize("fmt", ["gpkg", "parquet"])
def test_roads_cross_partition_rules(fmt: str, tmp_path: Path) -> None:
    src = tmp_path / f"roads.{fmt}"
    n = _roads(src)
    if fmt == "gpkg":
        assert pyogrio.read_info(src)["features"] == n
    whole = build_roads(src, tmp_path / "whole", RoadOptions(partition_level=0)).report
    parts = build_roads(src, tmp_path / "parts", RoadOptions(partition_level=3)).report
    assert parts.output["partitions"]["level"] == 3
    assert _accounting(parts) == _accounting(whole)
    codes = parts.rejected_by_code()
    assert codes == {"covered": 1, "duplicate_id": 1, "empty_geometry": 1, "absurd_value": 1}, codes
    assert parts.issue_for("S-COVERED")[1][0].code == "covered"
    # the service road and the primary covering it belong to different partitions
    tasks = parts.output["partitions"]["tasks"]
    assert sum(1 for t in tasks if t["owned"]) > 4
    assert parts.output["road_area_m2"] == pytest.approx(whole.output["road_area_m2"], abs=0.5)
    assert parts.counts["written"] == n - 4
    leaf_ids = _leaf_ids(tmp_path / "parts" / "tileset.json")
    assert set(leaf_ids) == set(_leaf_ids(tmp_path / "whole" / "tileset.json"))
    assert leaf_ids.count("P-LONG") >= 2  # drawn, piece by piece, by the cells it crosses
    assert "S-COVERED" not in leaf_ids


@pytest.mark.parametrize("fmt", ["gpkg", "parquet"])
def test_points_duplicates_and_orphans_across_partitions(fmt: str, tmp_path: Path) -> None:
    """Furniture: duplicate ids in different partitions, exact duplicates, rows without geometry or
    id, unknown types: the same rejections (rows, codes, messages) as the one-piece build (from a
    GeoPackage, and from GeoParquet with a bbox covering in row groups of 8)."""
    rows = []
    for i in range(40):
        rows.append({"id": f"F{i:03d}", "type": "bench", "height": 1.0, "heading": 10.0 * i,
                     "geometry": Point(X0 + (i % 8) * 250.0 + 5, Y0 + (i // 8) * 250.0 + 5)})
    rows.append({"id": "F001", "type": "street_lamp", "height": 6.0, "heading": 0.0,
                 "geometry": Point(X0 + 1900.0, Y0 + 1000.0)})
    rows.append(dict(rows[10], id="F010"))  # exact duplicate
    rows.append({"id": "F500", "type": "bench", "height": 1.0, "heading": 0.0, "geometry": None})
    rows.append({"id": None, "type": "bench", "height": 1.0, "heading": 0.0, "geometry": Point(X0 + 700, Y0 + 700)})
    rows.append({"id": "F501", "type": "ufo", "height": 1.0, "heading": 0.0, "geometry": Point(X0 + 1200, Y0 + 300)})
    rows.append({"id": "F502", "type": "bench", "height": None, "heading": None,
                 "geometry": Point(X0 + 1250, Y0 + 350)})
    src = tmp_path / f"furniture.{fmt}"
    if fmt == "parquet":
        gpd.GeoDataFrame(rows, crs="EPSG:4548").to_parquet(src, write_covering_bbox=True, row_group_size=8)
    else:
        gpd.GeoDataFrame(rows, crs="EPSG:4548").to_file(src, layer="furniture", driver="GPKG")
    whole = build_furniture(src, tmp_path / "whole", FurnitureOptions(partition_level=0)).report
    parts = build_furniture(src, tmp_path / "parts", FurnitureOptions(partition_level=3)).report
    assert parts.output["partitions"]["level"] == 3
    assert _accounting(parts) == _accounting(whole)
    codes = parts.rejected_by_code()
    assert codes == {"duplicate_id": 1, "duplicate": 1, "empty_geometry": 1, "missing_id": 1, "unknown_type": 1}
    scans = [r["scan"] for t in parts.output["partitions"]["tasks"] for r in t["reads"]]
    assert all(s is None for s in scans) if fmt == "gpkg" else sum(s["row_groups_skipped"] for s in scans) > 0
    assert sorted(_leaf_ids(tmp_path / "parts" / "tileset.json")) == sorted(
        _leaf_ids(tmp_path / "whole" / "tileset.json"))


def test_killed_run_resumes_and_finishes_identical(references: dict, clean: Path, tmp_path: Path) -> None:
    ref_out, _ = references["trees"]
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "onemap.cli", "tiles", "trees", str(clean / "trees.gpkg"), "--out", str(out),
           "--dem", str(clean / "dem.tif"), "--green", str(clean / "green.gpkg"), "--water",
           str(clean / "water.gpkg"), "--partition-level", str(LEVEL)]
    env = {**os.environ, "ONEMAP_DASK_SCHEDULER": ""}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list(tmp_path.glob("killed.partial-*/*/done.json"))) >= 2:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "tileset.json").exists()
    done_before = len(list(tmp_path.glob("killed.partial-*/*/done.json")))
    assert done_before >= 2
    reports = _build("trees", clean, out, LEVEL, green=clean / "green.gpkg", water=clean / "water.gpkg")
    assert reports[0].output["partitions"]["resumed"] >= 2
    assert _files(out) == _files(ref_out)
    assert json.loads((out / "tileset.json").read_text())["root"]["children"]
    assert not list(tmp_path.glob("killed.partial-*"))


def test_dem_window_same_heights(clean: Path) -> None:
    """A partition's DEM window samples the same heights as the whole DEM inside it."""
    from pipelines.drape import DemGrid, sample_heights

    whole = DemGrid.read(clean / "dem.tif")
    x0, y0, x1, y1 = whole.sampler.bounds()
    box = (x0 + 0.3 * (x1 - x0), y0 + 0.3 * (y1 - y0), x0 + 0.5 * (x1 - x0), y0 + 0.6 * (y1 - y0))
    window = DemGrid.window(clean / "dem.tif", box, whole.sampler.crs)
    assert window.sampler.heights.size < whole.sampler.heights.size / 10
    rng = np.random.default_rng(3)
    x, y = rng.uniform(box[0], box[2], 500), rng.uniform(box[1], box[3], 500)
    crs = whole.sampler.crs
    assert np.array_equal(sample_heights(window, x, y, crs=crs), sample_heights(whole, x, y, crs=crs))
    coarse = DemGrid.window(clean / "dem.tif", box, crs, resolution=8.0)
    assert coarse.sampler.resolution == pytest.approx(4 * whole.sampler.resolution, rel=0.01)
    assert np.nanmax(np.abs(sample_heights(coarse, x, y, crs=crs) - sample_heights(whole, x, y, crs=crs))) < 5.0


def test_road_owned_by_a_cell_it_never_meets_is_drawn_and_counted_once(tmp_path: Path) -> None:
    """A road looping around a level-3 cell, more than the margin (101 m) away from it, whose
    envelope's centre lies in that cell: its owner never reads it (GDAL keeps what a geometry
    meets), the orphans task accounts it, and the cells it crosses draw it piece by piece, as the
    one-piece build draws it: written once, drawn, nothing ``unowned`` (that code is for
    buildings, which only their owner draws)."""
    from pipelines import partitions as pt
    from pipelines.layer_partitions import plan_layer

    src = tmp_path / "roads.gpkg"
    n = _roads(src)
    plan = plan_layer("roads", src, RoadOptions(partition_level=3))
    cells = pt.grid_cells(plan.square, 3, plan.extent)
    x0, y0, x1, y1 = max((c.bounds for c in cells), key=lambda b: (b[0] - plan.square[0]) * (b[1] - plan.square[1])
                         if b[2] < plan.square[2] and b[3] < plan.square[3] else -1)
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2 + 150  # 150 m outside the cell, margin 101 m
    loop = LineString([(cx + r, cy - r), (cx - r, cy - r), (cx - r, cy + r), (cx + r, cy + r)])  # a C around it
    gdf = gpd.read_file(src)
    gdf = gpd.GeoDataFrame(pd.concat([gdf, gpd.GeoDataFrame(
        [{"id": "U-LOOP", "class": "residential", "width": 6.0, "bridge": 0, "geometry": loop}], crs=gdf.crs)],
        ignore_index=True), crs=gdf.crs)
    src.unlink()
    gdf.to_file(src, driver="GPKG")
    parts = build_roads(src, tmp_path / "parts", RoadOptions(partition_level=3)).report
    whole = build_roads(src, tmp_path / "whole", RoadOptions(partition_level=0)).report
    assert "U-LOOP" in _leaf_ids(tmp_path / "whole" / "tileset.json")
    assert _leaf_ids(tmp_path / "parts" / "tileset.json").count("U-LOOP") >= 2  # by the cells it crosses
    assert parts.issue_for("U-LOOP")[1] == [] and "unowned" not in parts.rejected_by_code()
    assert parts.counts["written"] == whole.counts["written"] == n + 1 - 4
