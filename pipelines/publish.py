"""The one publish path of every layer, and the per-tile manifest for incremental rebuilds.

Atomic publish: a run writes into ``OUT.tmp-<pid>`` beside ``OUT`` (:class:`Staging`, or the
:func:`staged` context manager); :meth:`Staging.publish` first validates what it is about to
publish (the in-process checks of ``onemap tiles validate``: schema, geometric errors, URIs,
headers, content inside bounding volumes, metadata counts, terrain tiles) and refuses invalid
output with :class:`InvalidOutputError`, naming the tile and the problem, leaving the previous
``OUT`` untouched. Then it renames ``OUT`` to ``OUT.old-<pid>``, the new folder to ``OUT``, and
deletes the old one. A run killed at any point leaves the previous ``OUT`` whole (or, between
the two renames, restorable: :func:`recover` puts ``OUT.old-*`` back when ``OUT`` is missing).

Incremental: ``OUT/.build/manifest.json`` keeps, per tile, the hash of everything its content
depends on (input features, options, code version) plus what tileset.json needs (bounding box,
geometric error, sizes). A tile whose hash is unchanged is hard-linked from the previous ``OUT``
instead of being encoded again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from core.errors import OnemapError

log = logging.getLogger(__name__)

MANIFEST = Path(".build") / "manifest.json"
MAX_LISTED = 5  # problems quoted in an InvalidOutputError message


class InvalidOutputError(OnemapError):
    """A pipeline produced tiles that fail validation; nothing was published."""


def check_output(folder: Path, out: Path | None = None) -> None:
    """Validate a staged output folder (every tileset.json / layer.json in it) with the cheap
    in-process checks; raise :class:`InvalidOutputError` naming the tiles and problems.
    A folder without any tileset (a run that accepted nothing: only its report) passes."""
    from tiles.validate import validate_path

    folder = Path(folder)
    if not any(folder.rglob("tileset.json")) and not any(folder.rglob("layer.json")):
        return
    report = validate_path(folder, gltf=False)
    if report.ok:
        return
    errors = report.errors
    listed = "; ".join(f"{e.file}: {e.message}" for e in errors[:MAX_LISTED])
    more = f" (and {len(errors) - MAX_LISTED} more)" if len(errors) > MAX_LISTED else ""
    name = out if out is not None else folder
    raise InvalidOutputError(
        f"refusing to publish {name}: {len(errors)} validation error(s): {listed}{more}",
        hint="the previous output was kept; run `onemap tiles validate` on a dry build to see all",
        errors=[str(e) for e in errors])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover(out: Path) -> None:
    """Restore ``OUT`` from an interrupted swap; delete leftovers of dead runs."""
    out = Path(out)
    parent = out.parent
    if not parent.exists():
        return
    pattern = re.compile(re.escape(out.name) + r"\.(tmp|old)-(\d+)$")
    leftovers = [(p, m.group(1), int(m.group(2))) for p in parent.iterdir()
                 if (m := pattern.match(p.name)) and p.is_dir()]
    if not out.exists():
        olds = sorted((p for p, kind, pid in leftovers if kind == "old" and not _pid_alive(pid)),
                      key=lambda p: p.stat().st_mtime, reverse=True)
        if olds:
            log.warning("restoring %s from interrupted publish %s", out, olds[0])
            os.rename(olds[0], out)
    for p, _kind, pid in leftovers:
        if p.exists() and not _pid_alive(pid):
            shutil.rmtree(p, ignore_errors=True)


@dataclass
class Staging:
    """A temporary output folder beside ``out``, published atomically."""

    out: Path
    tmp: Path = field(init=False)

    def __post_init__(self) -> None:
        self.out = Path(self.out).absolute()
        recover(self.out)
        self.tmp = self.out.parent / f"{self.out.name}.tmp-{os.getpid()}"
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.mkdir(parents=True)

    def reuse(self, rel: str) -> bool:
        """Hard-link (or copy) ``out/rel`` into the staging folder; False when it does not exist."""
        src = self.out / rel
        if not src.is_file():
            return False
        dst = self.tmp / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
        return True

    def write_bytes(self, rel: str, data: bytes) -> Path:
        dst = self.tmp / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(data)
        return dst

    def publish(self, *, validate: bool = True) -> Path:
        """Validate the staged folder (unless ``validate`` is False) and swap it in as ``out``.
        Invalid output is discarded and :class:`InvalidOutputError` raised; ``out`` stays."""
        if validate:
            try:
                check_output(self.tmp, self.out)
            except InvalidOutputError:
                self.abort()
                raise
        old = self.out.parent / f"{self.out.name}.old-{os.getpid()}"
        if self.out.exists():
            os.rename(self.out, old)
        os.rename(self.tmp, self.out)
        if old.exists():
            shutil.rmtree(old, ignore_errors=True)
        return self.out

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


@contextmanager
def staged(out: Path | str) -> Iterator[Staging]:
    """Stage a run's output beside ``out``; publish it (validated) when the block ends normally,
    discard it when the block raises (or the process dies: :func:`recover` cleans up)."""
    staging = Staging(Path(out))
    try:
        yield staging
        staging.publish()
    except BaseException:
        staging.abort()
        raise


def read_manifest(out: Path) -> dict[str, Any]:
    path = Path(out) / MANIFEST
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def write_manifest(root: Path, manifest: dict[str, Any]) -> Path:
    path = Path(root) / MANIFEST
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(manifest, option=orjson.OPT_SERIALIZE_NUMPY))
    return path


def digest(parts: Iterable[str | bytes]) -> str:
    h = hashlib.sha1()
    for p in parts:
        h.update(p.encode("utf-8") if isinstance(p, str) else p)
        h.update(b"\x1f")
    return h.hexdigest()
