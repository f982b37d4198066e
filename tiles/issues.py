"""Validation findings: severities, one :class:`Issue` per finding, a :class:`ValidationReport`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

ERROR, WARNING, INFO = "error", "warning", "info"


@dataclass(frozen=True)
class Issue:
    severity: str
    file: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity.upper():7s} {self.file}: {self.message}"


@dataclass
class ValidationReport:
    root: Path
    issues: list[Issue] = field(default_factory=list)
    tilesets: int = 0
    tiles: int = 0
    contents: int = 0
    glbs: int = 0
    terrain_tiles: int = 0
    seconds: float = 0.0

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == ERROR]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == WARNING]

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        return (f"{'OK' if self.ok else 'FAILED'} {self.root}: {self.tilesets} tilesets, {self.tiles} tiles, "
                f"{self.contents} contents, {self.glbs} glb validated, {self.terrain_tiles} terrain tiles; "
                f"{len(self.errors)} errors, {len(self.warnings)} warnings ({self.seconds:.1f} s)")

    def add(self, severity: str, file: Path | str, message: str) -> None:
        """Record a finding; a Path is named relative to the report's root."""
        name = rel_path(file, self.root) if isinstance(file, Path) else file
        self.issues.append(Issue(severity, name, message))


def rel_path(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)
