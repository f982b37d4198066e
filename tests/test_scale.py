"""City scale (issue 14): the partitioned buildings path (pipelines/building_partitions.py).

* in-process and ``--dask local:2`` write the same tiles, byte for byte (same ids, hierarchy);
* a run killed mid-way (SIGKILL) resumes from the partitions already done and finishes identical;
* each partition reads only its bounding box: the features it read are exactly those whose
  envelope meets its bbox (counted independently), and each building is owned by one partition;
* the accounting (rejections, repairs, duplicates across partitions, rows without geometry) is
  the same, row for row and message for message, as the one-piece build;
* GeoParquet (with and without a bbox covering) partitions like the GeoPackage: the same tiles,
  reads of exactly the rows whose envelope meets the bbox (row groups skipped, rows decoded
  counted), rows by 0-based number where the GeoPackage's fids start at 1.
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
import pyogrio
import pytest
import shapely

from pipelines.buildings import BuildingOptions, build_buildings

ROOT = Path(__file__).resolve().parent.parent
LEVEL = 2


def _files(out: Path) -> dict[str, str]:
    """sha1 of every published file but the run report (it holds timings)."""
    return {str(p.relative_to(out)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file() and p.name not in ("report.json", "report.txt")}


def _manifest_tiles(out: Path) -> dict[str, list[str]]:
    manifest = json.loads((out / ".build" / "manifest.json").read_text())
    return {k: t["ids"] for k, t in manifest["tiles"].items()}


def _accounting(result, rename: tuple[str, str] = ("", "")) -> tuple[set, set, dict]:  # noqa: ANN001
    d = result.report.to_dict()

    def msg(text: str) -> str:  # ``rename``: a file name in the messages replaced
        return text.replace(*rename) if rename[0] else text

    rejected = {(i["row"], i["id"], i["code"], msg(i["message"]), i.get("related_id")) for i in d["rejected"]}
    repaired = {(x["row"], x["id"], tuple(x["how"]), tuple(msg(i["message"]) for i in x["issues"]))
                for x in d["repaired"]}
    return rejected, repaired, d["counts"]


@pytest.fixture(scope="module")
def clean(sample_dir: Path) -> Path:
    return sample_dir / "clean"


@pytest.fixture(scope="module")
def reference(clean: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("scale") / "inproc"
    res = build_buildings(clean / "buildings.gpkg", out, BuildingOptions(dem=clean / "dem.tif", partition_level=LEVEL))
    return out, res


def test_dask_local_equals_in_process(reference: tuple[Path, object], clean: Path, tmp_path: Path) -> None:
    ref_out, ref = reference
    parts = ref.report.output["partitions"]
    assert parts["level"] == LEVEL and parts["workers"] == 1
    out = tmp_path / "dask"
    res = build_buildings(clean / "buildings.gpkg", out,
                          BuildingOptions(dem=clean / "dem.tif", partition_level=LEVEL, dask="local:2"))
    assert res.report.output["partitions"]["workers"] == 2
    assert len({t["pid"] for t in res.report.output["partitions"]["tasks"] if t["owned"]}) >= 1
    assert _files(out) == _files(ref_out)  # tiles, tileset.json (hierarchy, boxes, errors), manifest
    assert _manifest_tiles(out) == _manifest_tiles(ref_out)
    assert res.report.counts == ref.report.counts
    assert not list(tmp_path.glob("dask.partial-*")), "the work folder is removed once published"


def test_partitioned_accounting_and_tiles_match_one_piece(reference: tuple[Path, object], clean: Path,
                                                          tmp_path: Path) -> None:
    ref_out, ref = reference
    whole = build_buildings(clean / "buildings.gpkg", tmp_path / "whole",
                            BuildingOptions(dem=clean / "dem.tif", partition_level=0))
    assert "partitions" not in whole.report.output
    assert _accounting(ref) == _accounting(whole)
    # every building is in exactly one leaf, as in the one-piece build
    tileset = json.loads((ref_out / "tileset.json").read_text())
    ids_by_tile = _manifest_tiles(ref_out)
    leaves: list[str] = []

    def walk(t: dict) -> None:
        if not t.get("children"):
            leaves.extend(ids_by_tile[t["content"]["uri"][len("tiles/"):-len(".glb")]])
        for c in t.get("children", []):
            walk(c)

    walk(tileset["root"])
    assert sorted(leaves) == sorted(sum((ids for k, ids in _manifest_tiles(tmp_path / "whole").items()
                                         if k in _leaf_keys(tmp_path / "whole")), []))
    assert len(leaves) == len(set(leaves)) == whole.report.counts["written"]
    # the root draws the same tallest buildings as the one-piece root
    assert set(ids_by_tile["0/0/0"]) == set(_manifest_tiles(tmp_path / "whole")["0/0/0"])


def _leaf_keys(out: Path) -> set[str]:
    keys: set[str] = set()

    def walk(t: dict) -> None:
        if not t.get("children"):
            keys.add(t["content"]["uri"][len("tiles/"):-len(".glb")])
        for c in t.get("children", []):
            walk(c)

    walk(json.loads((out / "tileset.json").read_text())["root"])
    return keys


def test_partition_reads_only_its_bbox(reference: tuple[Path, object], clean: Path) -> None:
    _, ref = reference
    gdf = gpd.read_file(clean / "buildings.gpkg")
    env = shapely.bounds(np.asarray(gdf.geometry.values, dtype=object))
    tasks = ref.report.output["partitions"]["tasks"]
    assert len(tasks) == 4 ** LEVEL or len(tasks) > 1
    owned = 0
    for t in tasks:
        x0, y0, x1, y1 = t["bbox"]
        inside = int(np.sum((env[:, 0] <= x1) & (env[:, 2] >= x0) & (env[:, 1] <= y1) & (env[:, 3] >= y0)))
        assert t["read"] == inside, t
        assert t["read"] < len(gdf) or len(tasks) == 1
        owned += t["owned"]
    assert owned == len(gdf)  # every building owned by exactly one partition
    assert sum(t["read"] for t in tasks) < 1.2 * len(gdf)  # only boundary buildings are read twice


def test_killed_run_resumes_and_finishes_identical(reference: tuple[Path, object], clean: Path,
                                                   tmp_path: Path) -> None:
    ref_out, _ = reference
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "onemap.cli", "tiles", "buildings", str(clean / "buildings.gpkg"), "--out", str(out),
           "--dem", str(clean / "dem.tif"), "--partition-level", str(LEVEL)]
    env = {**os.environ, "ONEMAP_DASK_SCHEDULER": ""}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list(tmp_path.glob("killed.partial-*/*/done.json"))) >= 3:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "tileset.json").exists()
    done_before = len(list(tmp_path.glob("killed.partial-*/*/done.json")))
    assert done_before >= 3
    res = build_buildings(clean / "buildings.gpkg", out, BuildingOptions(dem=clean / "dem.tif", partition_level=LEVEL))
    assert res.report.output["partitions"]["resumed"] >= 3
    assert _files(out) == _files(ref_out)
    assert not list(tmp_path.glob("killed.partial-*"))


def _square(x: float, y: float, s: float = 12.0) -> shapely.Polygon:
    return shapely.box(x, y, x + s, y + s)


def test_duplicates_and_orphans_across_partitions(tmp_path: Path) -> None:
    """Duplicate ids in different partitions, exact duplicates, rows without geometry: the same
    rejections (rows, codes, messages) as the one-piece build."""
    x0, y0 = 535_000.0, 3_644_000.0  # EPSG:4548 metres
    rows = []
    for i in range(40):
        gx, gy = i % 8, i // 8
        rows.append({"id": f"B{i:03d}", "height": 6.0 + i, "use": "residential",
                     "geometry": _square(x0 + gx * 250.0, y0 + gy * 250.0)})
    rows.append({"id": "B001", "height": 9.0, "use": "office", "geometry": _square(x0 + 1900.0, y0 + 1000.0)})
    rows.append({"id": "B039", "height": 12.0, "use": "office", "geometry": _square(x0 + 10.0, y0 + 1100.0)})
    rows.append({"id": "B010", "height": 16.0, "use": "residential", "geometry": rows[10]["geometry"]})
    rows.append({"id": "B500", "height": 7.0, "use": "residential", "geometry": None})
    rows.append({"id": None, "height": 7.0, "use": "residential", "geometry": _square(x0 + 700.0, y0 + 700.0)})
    rows.append({"id": "B501", "height": None, "use": "residential", "geometry": _square(x0 + 1200.0, y0 + 300.0)})
    src = tmp_path / "b.gpkg"
    gpd.GeoDataFrame(rows, crs="EPSG:4548").to_file(src, layer="buildings", driver="GPKG")
    assert pyogrio.read_info(src)["features"] == len(rows)
    kw = {"max_features": 8}
    whole = build_buildings(src, tmp_path / "whole", BuildingOptions(partition_level=0, **kw))
    parts = build_buildings(src, tmp_path / "parts", BuildingOptions(partition_level=3, **kw))
    assert parts.report.output["partitions"]["level"] == 3
    assert _accounting(parts) == _accounting(whole)
    codes = parts.report.rejected_by_code()
    assert codes.get("duplicate_id") == 2 and codes.get("empty_geometry") == 1 and codes.get("missing_id") == 1
    assert sorted(sum(_manifest_tiles(tmp_path / "parts").values(), [])) != []
    leaves = _leaf_keys(tmp_path / "parts")
    written = sorted(i for k, ids in _manifest_tiles(tmp_path / "parts").items() if k in leaves for i in ids)
    assert written == sorted(i for k, ids in _manifest_tiles(tmp_path / "whole").items()
                             if k in _leaf_keys(tmp_path / "whole") for i in ids)


def test_dask_setting_and_partition_level() -> None:
    from core.settings import TileSettings
    from pipelines.partitions import auto_level, cell_index, grid_cells

    assert TileSettings(dask_scheduler="local:2").dask_scheduler == "local:2"
    assert TileSettings(dask_scheduler=" tcp://10.0.0.5:8786 ").dask_scheduler == "tcp://10.0.0.5:8786"
    assert TileSettings().dask_scheduler == ""
    with pytest.raises(ValueError, match="not a Dask scheduler address"):
        TileSettings(dask_scheduler="localhost")
    square = (0.0, 0.0, 8000.0, 8000.0)
    assert auto_level(9_000, 10_000, square, (0, 0, 8000, 8000)) == 0
    level = auto_level(300_000, 10_000, square, (0, 0, 8000, 4000))  # data in the south half only
    cells = grid_cells(square, level, (0, 0, 8000, 4000))
    assert 300_000 / len(cells) <= 10_000 < 4 * 300_000 / len(cells)
    assert all(c.bounds[1] <= 4000 for c in cells)
    ix, iy = cell_index(np.array([[0.0, 0.0], [7999.9, 3999.9], [4000.0, 4000.0]]), square, 1)
    assert ix.tolist() == [0, 1, 1] and iy.tolist() == [0, 0, 1]  # half-open cells


def test_local_workers_run_without_the_profiler(caplog: pytest.LogCaptureFixture) -> None:
    """--dask local:N workers keep no profiler history (it grew a worker's memory with the run's
    length: docs/scale.md, Memory); a cluster whose workers profile is warned about."""
    from distributed import Client, LocalCluster

    from pipelines.partitions import Engine, _worker_profiling

    with Engine("local:1") as engine:
        assert list(engine.client.run(_worker_profiling).values()) == [False]
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        assert list(client.run(_worker_profiling).values()) == [True]  # Dask's default
        with caplog.at_level("WARNING", logger="pipelines.partitions"), Engine(cluster.scheduler_address):
            pass
    assert "run the statistical profiler" in caplog.text, caplog.text


# ------------------------------------------------------------------------------------ GeoParquet sources
ROW_GROUP = 128  # rows per row group of the GeoParquet copies (28 row groups for the 3,517 buildings)
KINDS = ("covering", "plain")  # with a GeoParquet 1.1 bbox covering column, without


def _meets(env: np.ndarray, bbox) -> np.ndarray:  # noqa: ANN001
    x0, y0, x1, y1 = bbox
    return (env[:, 0] <= x1) & (env[:, 2] >= x0) & (env[:, 1] <= y1) & (env[:, 3] >= y0)


@pytest.fixture(scope="module")
def parquets(clean: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sample's buildings as GeoParquet, in the GeoPackage's row order (row i = fid i + 1)."""
    base = tmp_path_factory.mktemp("geoparquet")
    gdf = gpd.read_file(clean / "buildings.gpkg")
    out = {kind: base / f"{kind}.parquet" for kind in KINDS}
    gdf.to_parquet(out["covering"], write_covering_bbox=True, row_group_size=ROW_GROUP)
    gdf.to_parquet(out["plain"], row_group_size=ROW_GROUP)
    return out


@pytest.fixture(scope="module")
def from_parquet(parquets: dict[str, Path], clean: Path,
                 tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, object]]:
    """Partitioned builds (level 2, in-process) from each GeoParquet copy."""
    base = tmp_path_factory.mktemp("scale-parquet")
    return {kind: (base / kind, build_buildings(src, base / kind, BuildingOptions(dem=clean / "dem.tif",
                                                                                   partition_level=LEVEL)))
            for kind, src in parquets.items()}


def _manifest_without_run_hash(out: Path) -> dict:
    """manifest.json but the run's settings hash (it covers the source's path, size and mtime)."""
    manifest = json.loads((out / ".build" / "manifest.json").read_text())
    manifest.pop("settings")
    for tile in manifest["tiles"].values():
        tile.pop("hash")
    return manifest


@pytest.mark.parametrize("kind", KINDS)
def test_geoparquet_partitioned_equals_geopackage(kind: str, reference: tuple[Path, object],
                                                  from_parquet: dict) -> None:
    """A partitioned build from GeoParquet writes the GeoPackage build's tiles: same glb bytes,
    tileset.json (hierarchy, boxes, errors), ids per tile, accounting row for row."""
    ref_out, ref = reference
    out, res = from_parquet[kind]
    parts = res.report.output["partitions"]
    assert parts["level"] == LEVEL and parts["cells"] == ref.report.output["partitions"]["cells"]
    files, ref_files = _files(out), _files(ref_out)
    manifest = ".build/manifest.json"
    assert files.pop(manifest) != ref_files.pop(manifest)  # the settings hash names the source file
    assert files == ref_files and len(files) > 10
    assert _manifest_tiles(out) == _manifest_tiles(ref_out)
    assert _manifest_without_run_hash(out) == _manifest_without_run_hash(ref_out)
    rejected, repaired, counts = _accounting(res)
    assert rejected == set() and repaired and (rejected, repaired, counts) == _accounting(ref, rename=(
        "buildings.gpkg", f"{kind}.parquet"))  # messages name the file


@pytest.mark.parametrize("kind", KINDS)
def test_geoparquet_partition_reads_only_its_bbox(kind: str, from_parquet: dict, parquets: dict[str, Path],
                                                  clean: Path) -> None:
    """Each partition's read returns exactly the rows whose envelope meets its bbox (computed here
    with shapely over the whole file), the rows GDAL returns from the GeoPackage; with a covering
    it skips row groups and decodes only those rows, without one it decodes the whole file."""
    from core.delivery.read import read_layer

    _, res = from_parquet[kind]
    whole = gpd.read_parquet(parquets[kind])
    env = shapely.bounds(np.asarray(whole.geometry.values, dtype=object))
    n, groups = len(whole), -(-len(whole) // ROW_GROUP)
    tasks = res.report.output["partitions"]["tasks"]
    decoded = 0
    for t in tasks:
        inside = np.flatnonzero(_meets(env, t["bbox"]))
        scan = t["scan"]
        assert t["read"] == scan["rows_returned"] == len(inside), t
        assert scan["rows_total"] == n and scan["row_groups"] == groups
        assert scan["row_groups_read"] + scan["row_groups_skipped"] == groups
        if kind == "covering":  # float64 covering: no row decoded in vain, row groups skipped unread
            assert scan["covering"] and scan["rows_decoded"] == len(inside) < n, t
            assert scan["row_groups_skipped"] > 0, t
        else:  # no covering: the whole file is scanned
            assert not scan["covering"] and scan["rows_decoded"] == n and scan["row_groups_skipped"] == 0, t
        decoded += scan["rows_decoded"]
        pq_rows = read_layer(parquets[kind], (), bbox=t["bbox"], expected_crs=None).fids
        gpkg_rows = read_layer(clean / "buildings.gpkg", (), bbox=t["bbox"], expected_crs=None).fids - 1
        assert pq_rows.tolist() == inside.tolist() == sorted(gpkg_rows.tolist())  # file order
    if kind == "covering":
        assert decoded < 1.2 * n
    else:
        assert decoded == len(tasks) * n
    # boundary inclusive: boxes touching a building's envelope from outside, along a side (GDAL
    # returns it too: its extreme vertex is on the box) and at a corner only (GDAL, which tests the
    # geometry itself, does not: the envelope rule is the one partition ownership needs)
    for k in (0, 7, n // 2, n - 1):
        x0, y0, x1, y1 = env[k]
        sides = [(x1, y0, x1 + 5.0, y1), (x0 - 5.0, y0, x0, y1), (x0, y1, x1, y1 + 5.0), (x0, y0 - 5.0, x1, y0)]
        for bbox in [*sides, (x0 - 5.0, y1, x0, y1 + 5.0)]:
            rows = read_layer(parquets[kind], (), bbox=bbox, expected_crs=None).fids.tolist()
            assert k in rows and rows == np.flatnonzero(_meets(env, bbox)).tolist()
            if bbox in sides:
                gpkg = read_layer(clean / "buildings.gpkg", (), bbox=bbox, expected_crs=None).fids - 1
                assert sorted(gpkg.tolist()) == rows


def test_geoparquet_fids_are_row_numbers(parquets: dict[str, Path], clean: Path) -> None:
    """``fids`` reads rows by their 0-based number (fid_base 0), the GeoPackage's by fid (from 1):
    the same features, in the order asked; a row past the end names the file."""
    from core.delivery.errors import UnreadableError
    from core.delivery.read import read_layer
    from pipelines.building_partitions import plan_partitions
    from pipelines.buildings import BUILDING_SPECS

    options = BuildingOptions(dem=clean / "dem.tif", partition_level=LEVEL)
    plans = {"gpkg": plan_partitions(clean / "buildings.gpkg", options),
             **{kind: plan_partitions(src, options) for kind, src in parquets.items()}}
    assert plans["gpkg"].fid_base == 1 and plans["covering"].fid_base == plans["plain"].fid_base == 0
    for kind in KINDS:
        assert (plans[kind].n_input, plans[kind].square, plans[kind].extent, plans[kind].level) == (
            plans["gpkg"].n_input, plans["gpkg"].square, plans["gpkg"].extent, plans["gpkg"].level)
    n = plans["gpkg"].n_input
    rows = np.array([n - 1, 0, 1, 300, 2 * ROW_GROUP - 1, 2 * ROW_GROUP, 1700, 129])
    gpkg = read_layer(clean / "buildings.gpkg", BUILDING_SPECS, fids=rows + plans["gpkg"].fid_base)
    assert (gpkg.fids - 1).tolist() == rows.tolist()
    for src in parquets.values():
        layer = read_layer(src, BUILDING_SPECS, fids=rows)
        assert layer.fids.tolist() == rows.tolist()
        assert layer.gdf.drop(columns="geometry").equals(gpkg.gdf.drop(columns="geometry"))
        assert bool(np.all(shapely.equals_exact(layer.gdf.geometry.values, gpkg.gdf.geometry.values, 0)))
        assert list(layer.report.ids) == list(gpkg.report.ids)
        touched = len(set((rows // ROW_GROUP).tolist()))
        assert layer.scan["row_groups_read"] == touched and layer.scan["rows_decoded"] == len(rows)
        assert layer.scan["row_groups_skipped"] == -(-n // ROW_GROUP) - touched
        with pytest.raises(UnreadableError, match=rf"{src.name}: cannot read the features: no row {n}"):
            read_layer(src, BUILDING_SPECS, fids=[0, n])


def test_duplicates_and_orphans_across_partitions_from_geoparquet(tmp_path: Path) -> None:
    """Duplicate ids in different partitions, exact duplicates, rows without geometry or with an
    empty one, as GeoParquet (covering, row groups of 8): the same accounting partitioned and in
    one piece (rows without geometry are read back by their row number)."""
    x0, y0 = 535_000.0, 3_644_000.0
    rows = [{"id": f"B{i:03d}", "height": 6.0 + i, "use": "residential",
             "geometry": _square(x0 + (i % 8) * 250.0, y0 + (i // 8) * 250.0)} for i in range(40)]
    rows += [{"id": "B001", "height": 9.0, "use": "office", "geometry": _square(x0 + 1900.0, y0 + 1000.0)},
             {"id": "B010", "height": 16.0, "use": "residential", "geometry": rows[10]["geometry"]},
             {"id": "B500", "height": 7.0, "use": "residential", "geometry": None},
             {"id": "B501", "height": 7.0, "use": "residential", "geometry": shapely.Polygon()},
             {"id": None, "height": 7.0, "use": "residential", "geometry": _square(x0 + 700.0, y0 + 700.0)}]
    gdf = gpd.GeoDataFrame(rows, crs="EPSG:4548")
    src = tmp_path / "b.parquet"
    gdf.to_parquet(src, write_covering_bbox=True, row_group_size=8)
    whole = build_buildings(src, tmp_path / "whole", BuildingOptions(partition_level=0, max_features=8))
    parts = build_buildings(src, tmp_path / "parts", BuildingOptions(partition_level=3, max_features=8))
    assert parts.report.output["partitions"]["level"] == 3
    assert _accounting(parts) == _accounting(whole)
    codes = parts.report.rejected_by_code()
    assert codes.get("duplicate_id") == 1 and codes.get("empty_geometry") == 2 and codes.get("missing_id") == 1
    scans = [t["scan"] for t in parts.report.output["partitions"]["tasks"]]
    assert all(s["covering"] for s in scans) and sum(s["row_groups_skipped"] for s in scans) > 0
    leaves = _leaf_keys(tmp_path / "parts")
    written = sorted(i for k, ids in _manifest_tiles(tmp_path / "parts").items() if k in leaves for i in ids)
    assert written == sorted(i for k, ids in _manifest_tiles(tmp_path / "whole").items()
                             if k in _leaf_keys(tmp_path / "whole") for i in ids)


@pytest.mark.parametrize("fmt", ["parquet", "gpkg"])
def test_building_around_a_cell_corner_is_drawn(fmt: str, tmp_path: Path) -> None:
    """An L-shaped building around a level-2 cell corner: its envelope's centre (the corner) is in
    the north-east cell, which its geometry does not meet. The owner is the cell of its point on
    surface (as the one-piece build places it), which its geometry meets, so GDAL's bbox filter
    returns it there too. Owned by the envelope's centre, the GeoPackage build counted it written
    (orphans task) and drew it in no tile."""
    from pipelines import partitions as pt
    from pipelines.building_partitions import plan_partitions

    x0, y0 = 535_000.0, 3_644_000.0
    rows = [{"id": f"B{i:03d}", "height": 6.0 + i, "use": "residential",
             "geometry": _square(x0 + (i % 8) * 250.0, y0 + (i // 8) * 250.0)} for i in range(40)]
    src = tmp_path / f"b.{fmt}"

    def write() -> None:
        gdf = gpd.GeoDataFrame(rows, crs="EPSG:4548")
        if fmt == "gpkg":
            gdf.to_file(src, driver="GPKG")
        else:
            gdf.to_parquet(src, write_covering_bbox=True)

    write()
    plan = plan_partitions(src, BuildingOptions(partition_level=2))
    cells = pt.grid_cells(plan.square, 2, plan.extent)
    cx, cy = cells[len(cells) // 2].bounds[:2]
    rows.append({"id": "L", "height": 30.0, "use": "office", "geometry": shapely.union(
        shapely.box(cx - 30, cy - 30, cx + 30, cy - 20), shapely.box(cx - 30, cy - 30, cx - 20, cy + 30))})
    write()
    parts = build_buildings(src, tmp_path / "parts", BuildingOptions(partition_level=2, max_features=8))
    assert parts.report.counts["written"] == len(rows)
    leaves = _leaf_keys(tmp_path / "parts")
    assert [k for k, ids in _manifest_tiles(tmp_path / "parts").items() if "L" in ids and k in leaves]


def test_orphans_task_never_counts_a_building_written(tmp_path: Path) -> None:
    """The orphans task reads by id the rows no cell owned and draws nothing: a usable building
    there is rejected ``unowned`` (named, with the way out), never counted written."""
    import dataclasses

    from core.delivery.reasons import REASONS
    from pipelines.building_partitions import plan_partitions, run_orphans

    src = tmp_path / "b.gpkg"
    gpd.GeoDataFrame([{"id": f"B{i:03d}", "height": 6.0 + i, "use": "residential",
                       "geometry": _square(535_000.0 + (i % 8) * 250.0, 3_644_000.0 + (i // 8) * 250.0)}
                      for i in range(40)], crs="EPSG:4548").to_file(src, driver="GPKG")
    plan = dataclasses.replace(plan_partitions(src, BuildingOptions(partition_level=3)), work=str(tmp_path / "w"))
    run_orphans(plan, BuildingOptions(partition_level=3), [plan.fid_base + 5])
    folder = tmp_path / "w" / "orphans"
    assert np.load(folder / "written.npy").tolist() == []
    report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    text = json.dumps(report, ensure_ascii=False)
    assert '"unowned"' in text and "B005" in text, text[:2000]
    assert "--partition-level 0" in REASONS["unowned"].hint
