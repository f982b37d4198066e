"""Atomic publication of an output folder and the per-tile manifest for incremental rebuilds.

Atomic publish: a run writes into ``OUT.tmp-<pid>`` beside ``OUT``; :meth:`Staging.publish`
renames ``OUT`` to ``OUT.old-<pid>``, the new folder to ``OUT``, then deletes the old one. A run
killed at any point leaves the previous ``OUT`` whole (or, between the two renames, restorable:
:func:`recover` puts ``OUT.old-*`` back when ``OUT`` is missing).

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
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger(__name__)

MANIFEST = Path(".build") / "manifest.json"


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

    def publish(self) -> Path:
        old = self.out.parent / f"{self.out.name}.old-{os.getpid()}"
        if self.out.exists():
            os.rename(self.out, old)
        os.rename(self.tmp, self.out)
        if old.exists():
            shutil.rmtree(old, ignore_errors=True)
        return self.out

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


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
