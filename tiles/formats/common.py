"""What every content reader returns, and the header/table helpers the legacy formats share."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from tiles.issues import ERROR

Finding = tuple[str, str]  # (severity, message)


@dataclass
class ContentGeometry:
    """Vertex positions of one content in its tile frame, plus findings while reading it."""

    points: np.ndarray
    issues: list[Finding] = field(default_factory=list)
    glb: bytes | None = None  # a glb to pass to the glTF validator
    exact: bool = True  # False when only accessor bounds were available (Draco)


def no_geometry(issues: list[Finding], message: str | None = None) -> ContentGeometry:
    """A content that could not be read as far as its positions."""
    return ContentGeometry(np.zeros((0, 3)), [*issues, *([(ERROR, message)] if message else [])])


def table_json(data: bytes, start: int, length: int, what: str, issues: list[Finding]) -> dict:
    """A feature/batch table JSON header section (trailing space/NUL padding allowed)."""
    if length == 0:
        return {}
    try:
        parsed = json.loads(data[start:start + length].decode("utf-8").rstrip(" \x00"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        issues.append((ERROR, f"{what} JSON cannot be parsed: {exc}"))
        return {}
    if not isinstance(parsed, dict):
        issues.append((ERROR, f"{what} JSON is not an object"))
        return {}
    return parsed
