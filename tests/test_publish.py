"""One publish path (pipelines/publish.py) for every layer.

- publishing validates the staged output and refuses invalid tiles with a clear error naming
  the tile and the problem; the previously published folder stays as it was;
- every layer's build (`onemap tiles <layer>` on a small cut of the sample delivery), killed
  with SIGKILL while it stages into ``OUT.tmp-<pid>``, leaves the previously published ``OUT``
  byte-identical and valid; the next run's :func:`recover` removes the dead run's leftovers.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import geopandas as gpd
import laspy
import numpy as np
import pytest
import rasterio
from rasterio.windows import from_bounds

from pipelines.publish import InvalidOutputError, Staging, recover, staged
from tests.test_validate import box_volume, cube_glb, write_tileset
from tiles.validate import validate_path

REPO = Path(__file__).resolve().parent.parent
HALF = 300.0  # metres: the cut of the sample delivery around its DEM's centre


def snapshot(folder: Path) -> dict[str, str]:
    """Relative path → sha1 of every file under ``folder``."""
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(out.name + "."))


# ------------------------------------------------------------------------------ refusal
def test_publish_refuses_invalid_output_and_keeps_the_old(tmp_path: Path) -> None:
    out = write_tileset(tmp_path / "out", cube_glb())
    assert validate_path(out, gltf=False).ok
    before = snapshot(out)

    staging = Staging(out)  # a new run whose content lies outside its tile's box
    write_tileset(staging.tmp, cube_glb(), child_volume=box_volume((5.0, 5.0, 2.5), (2.0, 2.0, 1.0)))
    with pytest.raises(InvalidOutputError) as err:
        staging.publish()
    message = str(err.value)
    assert "refusing to publish" in message and str(out) in message
    assert "tiles/a.glb" in message and "outside the tile boundingVolume" in message, message
    assert snapshot(out) == before
    assert leftovers(out) == []  # the invalid staging folder is gone

    with pytest.raises(InvalidOutputError), staged(out) as st:  # the context manager: same path
        write_tileset(st.tmp, cube_glb(), child_error=500.0)  # geometricError grows to the leaves
    assert snapshot(out) == before and leftovers(out) == []

    with staged(out) as st:  # valid output is published
        write_tileset(st.tmp, cube_glb(), name="b.glb")
    assert "tiles/b.glb" in snapshot(out) and leftovers(out) == []


def test_report_only_output_publishes(tmp_path: Path) -> None:
    """A run that accepted nothing publishes its report (nothing to validate)."""
    out = tmp_path / "out"
    with staged(out) as st:
        (st.tmp / "report.json").write_text("{}")
    assert snapshot(out).keys() == {"report.json"}


# ------------------------------------------------------------------------------ kill -9 per layer
@pytest.fixture(scope="module")
def small_delivery(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 600 m x 600 m cut of the sample delivery (DEM, buildings, roads, trees, furniture, LAS)."""
    clean = sample_dir / "clean"
    d = tmp_path_factory.mktemp("small_delivery")
    with rasterio.open(clean / "dem.tif") as src:
        cx, cy = (src.bounds.left + src.bounds.right) / 2, (src.bounds.bottom + src.bounds.top) / 2
        bbox = (cx - HALF, cy - HALF, cx + HALF, cy + HALF)
        window = from_bounds(*bbox, transform=src.transform).round_offsets().round_lengths()
        profile = {**src.profile, "width": int(window.width), "height": int(window.height),
                   "transform": src.window_transform(window)}
        profile.pop("blockxsize", None), profile.pop("blockysize", None), profile.pop("tiled", None)
        with rasterio.open(d / "dem.tif", "w", **profile) as dst:
            dst.write(src.read(window=window))
    for name in ("buildings", "roads", "trees", "furniture"):
        gdf = gpd.read_file(clean / f"{name}.gpkg", bbox=bbox)
        assert len(gdf), name
        gdf.to_file(d / f"{name}.gpkg", layer=name)
    las = laspy.read(clean / "pointcloud.las")
    keep = ((las.x >= bbox[0]) & (las.x <= bbox[2]) & (las.y >= bbox[1]) & (las.y <= bbox[3]))
    idx = np.flatnonzero(keep)[:60_000]
    assert len(idx)
    small = laspy.LasData(las.header)
    small.points = las.points[idx]
    small.write(d / "pointcloud.las")
    return d


def command(layer: str, d: Path, out: Path) -> list[str]:
    dem = str(d / "dem.tif")
    args = {
        "buildings": ["buildings", str(d / "buildings.gpkg"), "--dem", dem, "--max-features", "50"],
        "roads": ["roads", str(d / "roads.gpkg"), "--dem", dem],
        "trees": ["trees", str(d / "trees.gpkg"), "--dem", dem],
        "furniture": ["furniture", str(d / "furniture.gpkg"), "--dem", dem],
        "terrain": ["terrain", dem, "--max-level", "15"],
        "pointcloud": ["pointcloud", str(d / "pointcloud.las"), "--jobs", "1"],
    }[layer]
    return [sys.executable, "-m", "onemap.cli", "tiles", *args, "--out", str(out)]


def kill_while_staging(cmd: list[str], out: Path, timeout: float = 300.0) -> int | None:
    """Run ``cmd``; SIGKILL its process group as soon as ``OUT.tmp-<pid>`` appears. Returns the
    exit code, -9 when killed mid-build (None: it finished before staging was seen)."""
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    tmp = out.parent / f"{out.name}.tmp-{proc.pid}"
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if tmp.exists():
                os.killpg(proc.pid, signal.SIGKILL)
                return proc.wait(timeout=30)
            time.sleep(0.002)
        return None if proc.poll() is not None else proc.returncode
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


@pytest.mark.parametrize("layer", ["buildings", "roads", "trees", "furniture", "terrain", "pointcloud"])
def test_kill_9_mid_build_keeps_previous_output(layer: str, small_delivery: Path, tmp_path: Path) -> None:
    out = tmp_path / layer
    first = subprocess.run(command(layer, small_delivery, out), cwd=REPO, capture_output=True, text=True,
                           timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert validate_path(out, gltf=False).ok
    assert any(k.endswith(("tileset.json", "layer.json")) for k in snapshot(out))

    for _attempt in range(3):  # a run that outpaces the poll published normally: try again
        before = snapshot(out)
        code = kill_while_staging(command(layer, small_delivery, out), out)
        if code == -signal.SIGKILL:
            break
    assert code == -signal.SIGKILL, "the build was never caught while staging"
    assert snapshot(out) == before  # the published folder did not change at all
    assert validate_path(out, gltf=False).ok
    assert any(".tmp-" in name for name in leftovers(out))  # the dead run's staging folder ...
    recover(out)  # ... is removed by the next run's recovery, which keeps OUT
    assert leftovers(out) == [] and snapshot(out) == before
