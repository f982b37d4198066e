"""Benchmark: buildings → 3D Tiles end to end, bytes per building, and py3dtiles as a reference.

    .venv/bin/python bench/bench_buildings.py SAMPLE_DIR [--lod 1] [--workers 2] [--repeat 1]

SAMPLE_DIR is the output of ``onemap sample generate`` (``clean/buildings.gpkg``,
``clean/dem.tif``) or a folder/file holding ``buildings.gpkg`` directly. Prints:

- LOD1 buildings/s end to end (read → clean → DEM bases → mesh → tiles → publish), wall and CPU;
- raw and gzip bytes per building for the leaf tiles (what a viewer loads at full detail) and
  for the whole tileset (leaves + coarser levels);
- the same leaf meshes encoded with py3dtiles as b3dm (FLOAT ``_BATCHID``, JSON batch table — the
  variants that pass the official validator, see docs NOTES) in the same run: bytes and
  encoding time as ratios against ours.
"""

from __future__ import annotations

import argparse
import gzip
import json
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def _find_inputs(path: Path) -> tuple[Path, Path | None]:
    if path.is_file():
        dem = path.parent / "dem.tif"
        return path, dem if dem.exists() else None
    for d in (path / "clean", path):
        if (d / "buildings.gpkg").exists():
            dem = d / "dem.tif"
            return d / "buildings.gpkg", dem if dem.exists() else None
    raise SystemExit(f"no buildings.gpkg in {path} or {path / 'clean'}")


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _py3dtiles_reference(out: Path) -> dict[str, float]:
    """Re-encode every leaf glb's mesh + properties as a py3dtiles b3dm; return bytes and seconds."""
    import pygltflib
    from py3dtiles.tileset.content import B3dm
    from py3dtiles.tileset.content.batch_table import BatchTable
    from py3dtiles.tileset.content.gltf_utils import GltfAttribute, GltfMesh, GltfPrimitive

    from tiles.gltf_read import read_glb

    ts = json.loads((out / "tileset.json").read_text())
    leaves: list[str] = []
    stack = [ts["root"]]
    while stack:
        t = stack.pop()
        if t.get("children"):
            stack.extend(t["children"])
        else:
            leaves.append(t["content"]["uri"])
    raw = gz = 0
    seconds = 0.0
    ours_raw = ours_gz = 0
    for uri in leaves:
        data = (out / uri).read_bytes()
        ours_raw += len(data)
        ours_gz += len(gzip.compress(data, 6))
        glb = read_glb(data)
        pos = glb.attribute("POSITION").astype(np.float32)
        nrm = glb.attribute("NORMAL").astype(np.float32)
        fid = glb.attribute("_FEATURE_ID_0").astype(np.float32)
        idx = glb.indices().astype(np.uint32)
        props = glb.property_table()
        t0 = time.perf_counter()
        bt = BatchTable()
        for name, values in props.items():
            bt.add_property_as_json(name, list(values))
        mesh = GltfMesh(
            pos,
            normals=nrm,
            primitives=[GltfPrimitive(triangles=idx.reshape(-1, 3))],
            additional_attributes=[GltfAttribute("_BATCHID", pygltflib.SCALAR, pygltflib.FLOAT, fid)],
        )
        b3dm = B3dm.from_meshes([mesh], batch_table=bt)
        blob = b3dm.to_array().tobytes()
        seconds += time.perf_counter() - t0
        raw += len(blob)
        gz += len(gzip.compress(blob, 6))
    return {
        "tiles": len(leaves),
        "bytes": raw,
        "gzip_bytes": gz,
        "seconds": seconds,
        "ours_bytes": ours_raw,
        "ours_gzip_bytes": ours_gz,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sample", type=Path)
    parser.add_argument("--lod", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--keep", type=Path, default=None, help="Keep the tileset here.")
    args = parser.parse_args()

    from pipelines.buildings import BuildingOptions, build_buildings

    src, dem = _find_inputs(args.sample)
    work = Path(tempfile.mkdtemp(prefix="bench-buildings-"))
    try:
        best = None
        for _ in range(args.repeat):
            out = work / "tiles"
            shutil.rmtree(out, ignore_errors=True)  # full rebuild, no incremental reuse
            cpu0, kids0 = time.process_time(), _children_cpu()
            t0 = time.perf_counter()
            result = build_buildings(src, out, BuildingOptions(dem=dem, lod=args.lod, workers=args.workers))
            wall = time.perf_counter() - t0
            cpu = time.process_time() - cpu0 + _children_cpu() - kids0
            if best is None or wall < best[1]:
                best = (result, wall, cpu)
        assert best is not None
        result, wall, cpu = best
        n = result.report.counts["written"]
        print(
            f"input           {src} ({result.report.counts['input']} features, dem={'yes' if dem else 'no'})"
        )
        print(
            f"written         {n} (repaired {result.report.counts['repaired']}, "
            f"rejected {result.report.counts['rejected']})  LOD{args.lod}  workers {args.workers}"
        )
        print(
            f"end to end      {wall:.2f} s wall, {cpu:.2f} s CPU  →  {n / wall:,.0f} buildings/s "
            f"({n / cpu:,.0f} per CPU-second)"
        )
        print(f"stages (s)      {result.stage_seconds}")
        print(
            f"tileset         {result.tiles} tiles, {result.bytes:,} B, gzip {result.gzip_bytes:,} B "
            f"→ {result.bytes / n:,.0f} B/building raw, {result.gzip_bytes / n:,.0f} B/building gzip "
            "(all levels)"
        )
        ref = _py3dtiles_reference(work / "tiles")
        print(
            f"leaf tiles      {ref['tiles']} tiles: {ref['ours_bytes'] / n:,.0f} B/building raw, "
            f"{ref['ours_gzip_bytes'] / n:,.0f} B/building gzip "
            f"(gzip ÷{ref['ours_bytes'] / ref['ours_gzip_bytes']:.1f})"
        )
        print(
            f"py3dtiles b3dm  same leaf meshes: {ref['bytes'] / n:,.0f} B/building raw, "
            f"{ref['gzip_bytes'] / n:,.0f} B/building gzip, encode only {n / max(ref['seconds'], 1e-9):,.0f} "
            "buildings/s"
        )
        print(
            f"ratio ours/py3dtiles  raw {ref['ours_bytes'] / ref['bytes']:.2f}  "
            f"gzip {ref['ours_gzip_bytes'] / ref['gzip_bytes']:.2f}"
        )
        if args.keep:
            shutil.rmtree(args.keep, ignore_errors=True)
            shutil.copytree(work / "tiles", args.keep)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
