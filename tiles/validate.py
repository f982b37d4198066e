"""Validate 3D Tiles tilesets and quantized-mesh terrain directories.

:func:`validate_path` finds every ``tileset.json`` and ``layer.json`` under a directory and checks:

Tilesets (this module)
- the tileset JSON against the 3D Tiles 1.1 JSON schema (``tiles/schema/3d-tiles-1.1``);
- geometricError non-increasing from the tileset down to the leaves;
- every content URI resolves (external tilesets are followed, with the parent's transform);
- that each content lies inside its tile's (and its own) bounding volume (:mod:`tiles.volumes`)
  after the content's own frame and the tile transform chain;
- every glb (standalone, or inside b3dm) through the Khronos glTF validator, many files per
  node process (:mod:`tiles.gltf_validator`).

Contents: :mod:`tiles.formats` (b3dm / pnts / i3dm / cmpt headers and tables, glb positions
through :class:`tiles.gltf_read.Glb`), :mod:`tiles.metadata_checks` (feature ids vs property tables).
Terrain: :mod:`tiles.terrain_checks`.

Issues carry a severity (``error`` / ``warning`` / ``info``), the file and a message.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np

from tiles.formats import content_geometry
from tiles.issues import ERROR, INFO, WARNING, Issue, ValidationReport, rel_path
from tiles.terrain_checks import validate_terrain
from tiles.volumes import column_major, volume_excess

log = logging.getLogger(__name__)

SCHEMA_PATH = Path(__file__).parent / "schema" / "3d-tiles-1.1" / "tileset.schema.json"
MAX_SCHEMA_ISSUES = 20
GE_EPS = 1e-9


@lru_cache(maxsize=1)
def _tileset_validator() -> Any:
    from jsonschema import Draft202012Validator

    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def schema_errors(tileset: dict[str, Any]) -> list[str]:
    """JSON-schema violations of a tileset JSON, as 'path: message' strings."""
    out = []
    for err in sorted(_tileset_validator().iter_errors(tileset), key=lambda e: list(map(str, e.path))):
        where = "/".join(str(p) for p in err.absolute_path) or "(root)"
        out.append(f"{where}: {err.message[:300]}")
    return out


# =============================================================================== tileset walk
@dataclass
class _Walker:
    root: Path
    report: ValidationReport
    gltf: bool
    visited: set[Path] = field(default_factory=set)
    glb_jobs: list[tuple[str, bytes | Path]] = field(default_factory=list)

    def issue(self, severity: str, file: Path | str, message: str) -> None:
        self.report.add(severity, file, message)

    def tileset(self, path: Path, parent_world: np.ndarray, parent_error: float | None) -> None:
        path = path.resolve()
        if path in self.visited:
            return
        self.visited.add(path)
        self.report.tilesets += 1
        try:
            ts = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            self.issue(ERROR, path, f"cannot read tileset JSON: {exc}")
            return
        errors = schema_errors(ts) if isinstance(ts, dict) else ["(root): not a JSON object"]
        for msg in errors[:MAX_SCHEMA_ISSUES]:
            self.issue(ERROR, path, f"schema: {msg}")
        if len(errors) > MAX_SCHEMA_ISSUES:
            self.issue(ERROR, path, f"schema: … {len(errors) - MAX_SCHEMA_ISSUES} more violations")
        if not isinstance(ts, dict) or not isinstance(ts.get("root"), dict):
            return
        version = ts.get("asset", {}).get("version") if isinstance(ts.get("asset"), dict) else None
        if version not in ("1.0", "1.1"):
            self.issue(WARNING, path, f"asset.version {version!r} is neither 1.0 nor 1.1")
        ge = ts.get("geometricError")
        if isinstance(ge, (int, float)) and parent_error is not None and ge > parent_error + GE_EPS:
            self.issue(ERROR, path, f"external tileset geometricError {ge} > the referencing tile's "
                                    f"{parent_error}")
        top = ge if isinstance(ge, (int, float)) else parent_error
        self.tiles(path, ts["root"], parent_world, top)

    def tiles(self, path: Path, root: dict[str, Any], world0: np.ndarray, top_error: float | None) -> None:
        base = path.parent
        stack: list[tuple[dict[str, Any], np.ndarray, float | None, str]]
        stack = [(root, world0, top_error, "root")]
        while stack:
            tile, parent_world, parent_error, where = stack.pop()
            if not isinstance(tile, dict):
                continue
            self.report.tiles += 1
            try:
                world = parent_world @ column_major(tile.get("transform"))
            except (TypeError, ValueError):
                world = parent_world
            ge = tile.get("geometricError")
            if isinstance(ge, (int, float)) and parent_error is not None and ge > parent_error + GE_EPS:
                self.issue(ERROR, path, f"{where}: geometricError {ge} > parent's {parent_error} "
                                        "(must not increase towards the leaves)")
            contents = list(tile.get("contents") or []) + ([tile["content"]] if "content" in tile else [])
            for c_idx, content in enumerate(contents):
                if isinstance(content, dict) and isinstance(content.get("uri"), str):
                    self.content(path, base, content, tile, world, ge, f"{where}.content[{c_idx}]")
            children = tile.get("children") or []
            if isinstance(children, list):
                for i, child in enumerate(children):
                    next_error = ge if isinstance(ge, (int, float)) else parent_error
                    stack.append((child, world, next_error, f"{where}.children[{i}]"))

    def content(self, path: Path, base: Path, content: dict[str, Any], tile: dict[str, Any],
                world: np.ndarray, tile_error: float | None, where: str) -> None:
        uri = content["uri"]
        parts = urlsplit(uri)
        if parts.scheme in ("http", "https", "data"):
            self.issue(WARNING, path, f"{where}: external URI {uri!r} not checked")
            return
        target = (base / unquote(parts.path)).resolve()
        if not target.is_file():
            self.issue(ERROR, path, f"{where}: content {uri!r} does not resolve ({rel_path(target, self.root)})")
            return
        if target.suffix.lower() == ".json":
            self.tileset(target, world, tile_error)
            return
        self.report.contents += 1
        data = target.read_bytes()
        geo = content_geometry(data)
        for severity, msg in geo.issues:
            self.issue(severity, target, msg)
        if geo.glb is not None and self.gltf:
            job: bytes | Path = target if data[:4] == b"glTF" else geo.glb
            self.glb_jobs.append((rel_path(target, self.root), job))
        vols = [("tile boundingVolume", tile.get("boundingVolume"))]
        if isinstance(content.get("boundingVolume"), dict):
            vols.append(("content boundingVolume", content["boundingVolume"]))
        for label, vol in vols:
            if not isinstance(vol, dict) or len(geo.points) == 0:
                continue
            excess, n_out = volume_excess(vol, geo.points, world)
            if n_out:
                note = "" if geo.exact else " (Draco: accessor bounds)"
                self.issue(ERROR, target, f"{where}: {n_out} of {len(geo.points)} vertices outside the "
                                          f"{label}, by up to {excess:.3f} m{note}")

    def run_gltf_validator(self) -> None:
        if not self.glb_jobs:
            return
        from tiles.gltf_validator import validate_glb_files, validator_available

        if not validator_available():
            self.issue(WARNING, str(self.root), "glTF validator not installed (npm install): "
                                                "glb files not validated")
            return
        with tempfile.TemporaryDirectory(prefix="onemap-validate-") as tmp:
            paths: list[str] = []
            names: dict[str, str] = {}
            for name, job in self.glb_jobs:
                if isinstance(job, Path):
                    p = str(job)
                else:
                    p = str(Path(tmp) / (hashlib.sha1(job).hexdigest() + ".glb"))
                    Path(p).write_bytes(job)
                paths.append(p)
                names[p] = name
            reports = validate_glb_files(paths)
        self.report.glbs += len(reports)
        for rep in reports:
            name = names.get(rep["path"], rep["path"])
            msgs = rep.get("messages", [])
            if rep.get("numErrors"):
                first = "; ".join(f"{m.get('code')}: {m.get('message')} ({m.get('pointer', '')})"
                                  for m in msgs if m.get("severity") == 0)[:600]
                self.issue(ERROR, name, f"glTF validator: {rep['numErrors']} errors: {first}")
            if rep.get("numWarnings"):
                first = "; ".join(f"{m.get('code')}: {m.get('message')}" for m in msgs
                                  if m.get("severity") == 1)[:400]
                self.issue(WARNING, name, f"glTF validator: {rep['numWarnings']} warnings: {first}")


# =============================================================================== entry points
def _targets(path: Path) -> Iterator[Path]:
    if path.is_file():
        yield path
        return
    found = sorted(list(path.rglob("tileset.json")) + list(path.rglob("layer.json")),
                   key=lambda p: (len(p.relative_to(path).parts), str(p)))
    yield from found


def validate_path(path: str | Path, *, gltf: bool = True,
                  height_range: tuple[float, float] | None = None) -> ValidationReport:
    """Validate every tileset.json / layer.json at or under ``path``.

    ``gltf`` runs the Khronos glTF validator on every glb (when installed); ``height_range``
    (min, max ellipsoidal metres) bounds terrain heights — the CLI derives it from ``--dem``
    (:func:`pipelines.dem.ellipsoidal_height_range`).
    """
    t0 = time.perf_counter()
    path = Path(path)
    root = path if path.is_dir() else path.parent
    report = ValidationReport(root=root)
    if not path.exists():
        report.issues.append(Issue(ERROR, str(path), "no such file or directory"))
        return report
    walker = _Walker(root, report, gltf)
    targets = list(_targets(path))
    if not targets:
        report.issues.append(Issue(ERROR, str(path), "no tileset.json or layer.json found"))
    for target in targets:
        if target.name == "layer.json":
            validate_terrain(target, report, height_range=height_range)
        elif target.resolve() not in walker.visited:
            walker.tileset(target, np.eye(4), None)
    walker.run_gltf_validator()
    report.seconds = time.perf_counter() - t0
    log.debug(report.summary())
    return report


__all__ = ["ERROR", "INFO", "WARNING", "Issue", "ValidationReport", "schema_errors", "validate_path"]
