"""Benchmark: orthophoto -> imagery pyramid, reality mesh -> 3D Tiles.

    .venv/bin/python bench/bench_imagery_mesh.py SAMPLE_DIR [--repeat 1]

SAMPLE_DIR is the output of ``onemap sample generate`` (``clean/ortho.tif``, ``clean/mesh/``).
Prints, for the imagery pyramid: tiles, tiles/s, MB, source megapixels/s; for the mesh:
triangles in, triangles/s in (read + place + simplify + encode + publish), triangles out per
level, bytes (raw and gzip) per leaf triangle, the measured geometric error per level, and the
incremental rebuild time (nothing changed); then the same build with ``--compress draco``: its
time and bytes per leaf triangle (whole tiles with textures, and the binary geometry alone) next
to the uncompressed build's. Wall and CPU seconds; no figure is asserted.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import rasterio


def _clean(path: Path) -> Path:
    return path / "clean" if (path / "clean").is_dir() else path


def bench_imagery(ortho: Path, work: Path) -> None:
    from pipelines.imagery import build_imagery

    with rasterio.open(ortho) as ds:
        mpx = ds.width * ds.height / 1e6
    t0, c0 = time.perf_counter(), time.process_time()
    res = build_imagery(ortho, work / "imagery")
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    info = res.info
    print(f"imagery: {ortho.name} {mpx:.1f} Mpx -> {info.tiles} tiles (levels {info.minzoom}-{info.maxzoom}, "
          f"{info.scheme}, {info.fmt}), {info.bytes / 1e6:.1f} MB")
    print(f"  {wall:.1f} s wall, {cpu:.1f} s cpu: {info.tiles / wall:.0f} tiles/s, {mpx / wall:.1f} source Mpx/s, "
          f"{info.bytes / info.tiles / 1e3:.1f} kB/tile")
    print(f"  per level: {res.levels}")


def bench_mesh(src: Path, work: Path) -> None:
    from pipelines.mesh import MeshOptions, MeshResult, build_mesh

    out = work / "mesh"
    t0, c0 = time.perf_counter(), time.process_time()
    res = build_mesh(src, out)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"mesh: {res.triangles_in:,} triangles in {res.leaves} export tiles -> {res.tiles} tiles, "
          f"{res.levels + 1} levels")
    print(f"  {wall:.1f} s wall, {cpu:.1f} s cpu: {res.triangles_in / wall:,.0f} triangles/s in, "
          f"{sum(res.triangles_out.values()) / wall:,.0f} triangles/s out (all levels)")
    print(f"  triangles per level: {res.triangles_out}; measured error (m): "
          f"{ {k: round(v, 2) for k, v in res.errors_m.items()} }")
    print(f"  {res.bytes / 1e6:.2f} MB raw, {res.gzip_bytes / 1e6:.2f} MB gzip (all levels); "
          f"leaves {res.bytes_leaves_per_triangle():.1f} B/triangle incl. textures; stages {res.stages}")
    t0 = time.perf_counter()
    again = build_mesh(src, out)
    print(f"  incremental rebuild, nothing changed: {time.perf_counter() - t0:.1f} s "
          f"({again.tiles_reused}/{again.tiles} tiles reused)")
    t0, c0 = time.perf_counter(), time.process_time()
    dra = build_mesh(src, work / "mesh-draco", MeshOptions(compress="draco"))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"mesh --compress draco: {wall:.1f} s wall, {cpu:.1f} s cpu: {dra.triangles_in / wall:,.0f} triangles/s in; "
          f"{dra.bytes / 1e6:.2f} MB raw, {dra.gzip_bytes / 1e6:.2f} MB gzip (all levels)")
    print("  bytes per leaf triangle      none    draco")
    for label, fn in (("tiles incl. textures", MeshResult.bytes_leaves_per_triangle),
                      ("geometry only", MeshResult.geometry_bytes_per_triangle)):
        print(f"    {label:20s}  {fn(res):8.1f} {fn(dra):8.1f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("sample", type=Path)
    args = ap.parse_args()
    clean = _clean(args.sample)
    work = Path(tempfile.mkdtemp(prefix="bench-imagery-mesh-"))
    try:
        if (clean / "ortho.tif").exists():
            bench_imagery(clean / "ortho.tif", work)
        if (clean / "mesh" / "metadata.xml").exists():
            bench_mesh(clean / "mesh", work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
