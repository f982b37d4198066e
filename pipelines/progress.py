"""The one progress callback every ``build_<layer>(src, out, options, progress)`` takes.

A pipeline reports ``progress(stage, done, total)`` for each stage it goes through ("read",
"clean", "tiles", ...); the CLI draws one bar per stage (``onemap/commands/tiles.py``),
``tiles build`` forwards it. ``None`` means nobody listens.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class Progress(Protocol):
    def __call__(self, stage: str, done: int, total: int) -> None: ...


def report(progress: Progress | None, stage: str, done: int, total: int) -> None:
    """Call ``progress`` if there is one."""
    if progress is not None:
        progress(stage, done, total)


def for_stage(progress: Progress | None, stage: str) -> Callable[[int, int], None] | None:
    """A ``(done, total)`` callback for a helper that only counts (tile writers), bound to one stage."""
    if progress is None:
        return None
    return lambda done, total: progress(stage, done, total)
