"""Run accounting shared by every pipeline (buildings, roads, trees, furniture, ...).

Every input feature ends as exactly one of:

- **written**: it is in the output as delivered;
- **repaired**: it is in the output after a documented change (``how`` codes such as
  ``make_valid``, ``height_from_floors``, ``parsed_value``, ``reprojected``); repaired ⊂ written;
- **rejected**: it is not in the output; a reason ``code`` and a human message naming the file,
  the feature id and the field say why.

Features are keyed by their 0-based row in the source layer (ids can be missing or repeated,
rows cannot). ``input == written + rejected`` is checked by :meth:`RunReport.finalize`; a
pipeline that loses a feature without rejecting it fails loudly instead of under-reporting.

Usage::

    report = RunReport(layer="buildings", source=path, ids=ids)
    report.reject(rows, "absurd_height", "height 900 m > 500 m", field="height")
    report.repair(rows, "height_from_floors", "height = floors x 3.0 m", field="height")
    report.mark_written(rows_in_output)
    report.finalize()          # raises AccountingError if counts do not add up
    report.write(out_dir)      # report.json + report.txt
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

log = logging.getLogger(__name__)

REPORT_JSON = "report.json"
REPORT_TXT = "report.txt"

# Reason codes used by the pipelines (free-form codes are accepted too; these are documented).
REJECT_CODES: dict[str, str] = {
    "missing_id": "the id field is empty",
    "duplicate": "same geometry and attributes as an earlier feature (kept id named)",
    "duplicate_id": "id already used by an earlier, different feature",
    "empty_geometry": "no geometry",
    "wrong_geometry_type": "geometry type not accepted by this layer",
    "self_intersection": "self-intersecting geometry (repaired with make_valid when it keeps an area)",
    "zero_area": "polygon with (near) zero area",
    "zero_length": "line with (near) zero length",
    "missing_height": "no height and no floors",
    "absurd_height": "height <= 0 or > 500 m, or floors > 120",
    "absurd_value": "value outside the accepted range",
    "unparsable_value": "a value that is not a number",
    "outside_boundary": "outside the district boundary",
}


class AccountingError(RuntimeError):
    """The pipeline lost or double-counted features: a bug, never a data problem."""


@dataclass(frozen=True)
class Issue:
    """One reject or repair of one feature."""

    row: int
    id: str | None
    code: str
    message: str
    field: str | None = None
    value: str | None = None
    file: str | None = None
    related_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        d = {"row": self.row, "id": self.id, "code": self.code, "field": self.field, "value": self.value,
             "file": self.file, "message": self.message}
        if self.related_id is not None:
            d["related_id"] = self.related_id
        return d


def _rows(rows: int | Iterable[int] | np.ndarray) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(rows if not isinstance(rows, (set, frozenset)) else sorted(rows)))
    if arr.dtype == bool:
        arr = np.flatnonzero(arr)
    return arr.astype(np.int64, copy=False)


def _per_row(value: str | Sequence[Any] | np.ndarray | None, n: int) -> list[Any]:
    if value is None or isinstance(value, str):
        return [value] * n
    values = list(value)
    if len(values) != n:
        raise ValueError(f"{len(values)} values for {n} rows")
    return values


@dataclass
class RunReport:
    """Accounting for one layer of one run (see module docstring)."""

    layer: str
    source: str
    ids: np.ndarray  # (n,) object: the feature id of each source row (None when missing)
    rejected: dict[int, Issue] = field(default_factory=dict)
    repaired: dict[int, list[Issue]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    output: dict[str, Any] = field(default_factory=dict)
    _written: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.ids = np.asarray(self.ids, dtype=object)
        self.source = str(self.source)
        self._file_name = Path(self.source).name

    # ----------------------------------------------------------------- recording
    @property
    def n_input(self) -> int:
        return len(self.ids)

    @property
    def file_name(self) -> str:
        return self._file_name

    def _id(self, row: int) -> str | None:
        v = self.ids[row]
        return None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)

    def reject(
        self,
        rows: int | Iterable[int] | np.ndarray,
        code: str,
        message: str | Sequence[str],
        *,
        field: str | None = None,
        value: str | Sequence[Any] | None = None,
        related_id: str | Sequence[str | None] | None = None,
    ) -> None:
        """Reject rows (bool mask or positions). A row rejected twice keeps its first reason."""
        rows = _rows(rows)
        messages = _per_row(message, len(rows))
        values = _per_row(value, len(rows))
        related = _per_row(related_id, len(rows))
        for r, msg, val, rel in zip(rows.tolist(), messages, values, related, strict=True):
            if r in self.rejected:
                continue
            fid = self._id(r)
            self.rejected[r] = Issue(r, fid, code, self._decorate(r, fid, field, msg), field,
                                     None if val is None else str(val), self.file_name, rel)
            self.repaired.pop(r, None)

    def repair(
        self,
        rows: int | Iterable[int] | np.ndarray,
        how: str,
        message: str | Sequence[str],
        *,
        field: str | None = None,
        value: str | Sequence[Any] | None = None,
    ) -> None:
        """Record a repair of rows (bool mask or positions). Rejected rows are ignored."""
        rows = _rows(rows)
        messages = _per_row(message, len(rows))
        values = _per_row(value, len(rows))
        for r, msg, val in zip(rows.tolist(), messages, values, strict=True):
            if r in self.rejected:
                continue
            fid = self._id(r)
            self.repaired.setdefault(r, []).append(
                Issue(r, fid, how, self._decorate(r, fid, field, msg), field,
                      None if val is None else str(val), self.file_name))

    def note(self, message: str) -> None:
        """A layer-level remark (e.g. 'no DEM given: bases at 0 m')."""
        self.notes.append(message)
        log.info("%s: %s", self.layer, message)

    def _decorate(self, row: int, fid: str | None, field: str | None, msg: str) -> str:
        where = f"{self.file_name}: feature {fid if fid is not None else f'row {row}'}"
        if field:
            where += f", field {field!r}"
        return f"{where}: {msg}"

    def rejected_mask(self) -> np.ndarray:
        mask = np.zeros(self.n_input, dtype=bool)
        if self.rejected:
            mask[np.fromiter(self.rejected.keys(), dtype=np.int64)] = True
        return mask

    def mark_written(self, rows: Iterable[int] | np.ndarray) -> None:
        """The rows that reached the output (the finest level of a tileset)."""
        rows = _rows(rows)
        self._written = rows if self._written is None else np.concatenate([self._written, rows])

    # ----------------------------------------------------------------- results
    def finalize(self) -> None:
        """Check input == written + rejected, repaired ⊂ written, no row written twice."""
        written = self._written if self._written is not None else np.zeros(0, np.int64)
        uniq, counts = np.unique(written, return_counts=True)
        if np.any(counts > 1):
            raise AccountingError(f"{self.layer}: rows written twice: {uniq[counts > 1][:10].tolist()}")
        rejected = set(self.rejected)
        both = rejected.intersection(uniq.tolist())
        if both:
            raise AccountingError(f"{self.layer}: rows both written and rejected: {sorted(both)[:10]}")
        if len(uniq) + len(rejected) != self.n_input:
            missing = sorted(set(range(self.n_input)) - rejected - set(uniq.tolist()))
            raise AccountingError(
                f"{self.layer}: {self.n_input} input != {len(uniq)} written + {len(rejected)} rejected; "
                f"unaccounted rows {missing[:10]}"
            )
        stray = set(self.repaired) - set(uniq.tolist())
        if stray:
            raise AccountingError(f"{self.layer}: repaired rows not written: {sorted(stray)[:10]}")

    @property
    def counts(self) -> dict[str, int]:
        n_rejected = len(self.rejected)
        return {
            "input": self.n_input,
            "written": self.n_input - n_rejected,
            "repaired": len(self.repaired),
            "rejected": n_rejected,
        }

    def rejected_by_code(self) -> dict[str, int]:
        return dict(Counter(i.code for i in self.rejected.values()).most_common())

    def repaired_by_how(self) -> dict[str, int]:
        return dict(Counter(i.code for issues in self.repaired.values() for i in issues).most_common())

    def issue_for(self, feature_id: str) -> tuple[str, list[Issue]]:
        """('rejected'|'repaired'|'written'|'absent', issues) for a feature id (tests, tooling)."""
        for issue in self.rejected.values():
            if issue.id == feature_id:
                return "rejected", [issue]
        for issues in self.repaired.values():
            if issues[0].id == feature_id:
                return "repaired", issues
        if feature_id in set(self.ids.tolist()):
            return "written", []
        return "absent", []

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "source": self.source,
            "counts": self.counts,
            "rejected_by_code": self.rejected_by_code(),
            "repaired_by_how": self.repaired_by_how(),
            "notes": list(self.notes),
            "output": dict(self.output),
            "rejected": [self.rejected[r].as_dict() for r in sorted(self.rejected)],
            "repaired": [
                {"row": r, "id": issues[0].id, "how": [i.code for i in issues],
                 "issues": [i.as_dict() for i in issues]}
                for r, issues in sorted(self.repaired.items())
            ],
        }

    def summary_text(self, max_lines: int = 50) -> str:
        c = self.counts
        lines = [
            f"{self.layer}: {self.source}",
            f"  input {c['input']}  written {c['written']} (repaired {c['repaired']})"
            f"  rejected {c['rejected']}",
        ]
        if self.output:
            lines.append("  output: " + ", ".join(f"{k} {_fmt(v)}" for k, v in self.output.items()))
        for note in self.notes:
            lines.append(f"  note: {note}")
        if self.repaired:
            lines.append("  repaired by how: "
                         + ", ".join(f"{k} {v}" for k, v in self.repaired_by_how().items()))
        if self.rejected:
            lines.append("  rejected by reason: "
                         + ", ".join(f"{k} {v}" for k, v in self.rejected_by_code().items()))
            lines.append("  rejected features:")
            for r in sorted(self.rejected)[:max_lines]:
                i = self.rejected[r]
                lines.append(f"    [{i.code}] {i.message}")
            if len(self.rejected) > max_lines:
                lines.append(f"    ... {len(self.rejected) - max_lines} more in {REPORT_JSON}")
        if self.repaired:
            lines.append("  repaired features:")
            for r in sorted(self.repaired)[:max_lines]:
                for i in self.repaired[r]:
                    lines.append(f"    [{i.code}] {i.message}")
            if len(self.repaired) > max_lines:
                lines.append(f"    ... {len(self.repaired) - max_lines} more in {REPORT_JSON}")
        return "\n".join(lines) + "\n"

    def write(self, out_dir: Path) -> tuple[Path, Path]:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        json_path, txt_path = out_dir / REPORT_JSON, out_dir / REPORT_TXT
        options = orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY
        json_path.write_bytes(orjson.dumps(self.to_dict(), option=options))
        txt_path.write_text(self.summary_text(), encoding="utf-8")
        return json_path, txt_path


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.2f}"
    if isinstance(v, int) and v >= 10_000:
        return f"{v:,}"
    return str(v)
