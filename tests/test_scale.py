"""City scale (issue 14): the partitioned buildings path (pipelines/building_partitions.py).

* in-process and ``--dask local:2`` write the same tiles, byte for byte (same ids, hierarchy);
* a run killed mid-way (SIGKILL) resumes from the partitions already done and finishes identical;
* each partition reads only its bounding box: the features it read are exactly those whose
  envelope meets its bbox (counted independently), and each building is owned by one partition;
* the accounting (rejections, repairs, duplicates across partitions, rows without geometry) is
  the same, row for row and message for message, as the one-piece build.
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


def _accounting(result) -> tuple[set, set, dict]:  # noqa: ANN001
    d = result.report.to_dict()
    rejected = {(i["row"], i["id"], i["code"], i["message"], i.get("related_id")) for i in d["rejected"]}
    repaired = {(x["row"], x["id"], tuple(x["how"]), tuple(i["message"] for i in x["issues"]))
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
