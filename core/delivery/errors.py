"""Errors of the delivery layer: a delivery that cannot be read as asked.

Every class is a :class:`core.errors.InputError` (the CLI prints it and exits 1; the API maps it
to 4xx). The message names the file (and the feature and field when there is one); ``hint`` names
the real option or fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from core.errors import InputError


class SourceError(InputError):
    """A source file cannot be read as asked; the message says which file and how to fix it."""

    def __init__(self, path: Path | str, message: str, *, hint: str | None = None) -> None:
        self.path = Path(path)
        super().__init__(f"{self.path}: {message}", hint=hint, path=str(self.path))


class UnreadableError(SourceError):
    """Not a readable vector/table file (truncated, wrong format, missing .shx/.dbf sidecar)."""


class CrsMissingError(SourceError):
    """The file declares no CRS and none was given."""


class CrsUnknownError(SourceError):
    """The declared or given CRS is not one PROJ understands."""


class CrsConflictError(SourceError):
    """``--src-crs`` was given for a file that declares a different CRS."""


class FieldMissingError(SourceError):
    """A mapped or required field is not in the file."""

    def __init__(self, path: Path | str, canonical: str, source_name: str, available: Sequence[str],
                 hint: str = "") -> None:
        self.canonical, self.source_name, self.available = canonical, source_name, list(available)
        mapped = f" (mapped from {canonical!r})" if canonical != source_name else ""
        super().__init__(
            path,
            f"field {source_name!r}{mapped} not found; available fields: {', '.join(available) or '(none)'}"
            + (f"; {hint}" if hint else ""),
        )


class EmptyLayerError(SourceError):
    """The layer has no features."""


class NonSpatialError(SourceError):
    """The file/layer has no geometry (an attribute table, or a CSV without coordinates)."""


class EncodingError(SourceError):
    """Text fields cannot be decoded with the declared encoding (or decode to mojibake)."""


class LayerError(SourceError):
    """The file has several layers and none was chosen, or the chosen one does not exist."""


class MappingError(SourceError):
    """The YAML field mapping is malformed."""


class NothingAcceptedError(SourceError):
    """Every feature of the delivery was rejected, or it has none: publishing or loading it would
    replace live data with nothing (refused unless ``--allow-empty``)."""
