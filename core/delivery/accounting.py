"""The one accounting class of the delivery layer, shared by the tile pipelines and the loaders.

Every input feature ends as exactly one of:

- **written**: it is in the output as delivered;
- **repaired**: it is in the output after a documented change (``how`` codes such as
  ``make_valid``, ``height_from_floors``, ``parsed_value``, ``reprojected``); repaired ⊂ written;
- **rejected**: it is not in the output; a reason ``code`` and a human message naming the file,
  the feature id and the field say why.

Features are keyed by their 0-based row in the source layer (ids can be missing or repeated,
rows cannot). ``input == written + rejected`` is checked against what was really written: the
pipelines mark the rows they put in the tiles (:meth:`Accounting.mark_written` +
:meth:`Accounting.finalize`), the loaders pass the row count the database reports
(:meth:`Accounting.finish`). A pipeline or loader that loses a feature without rejecting it fails
loudly instead of under-reporting. Every code is one of :data:`core.delivery.reasons.REASONS`.

Usage::

    report = Accounting(layer="buildings", source=path, ids=ids)
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
import pandas as pd

from core.delivery.reasons import REASONS, REJECT_CODES

log = logging.getLogger(__name__)

REPORT_JSON = "report.json"
REPORT_TXT = "report.txt"

__all__ = ["REJECT_CODES", "Accounting", "AccountingError", "Issue", "RunReport"]


class AccountingError(RuntimeError):
    """A pipeline or loader lost or double-counted features: a bug, never a data problem."""


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

    @property
    def reason(self) -> str:
        return self.code

    @property
    def feature_id(self) -> str | None:
        return self.id

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


def _check_code(code: str) -> None:
    if code not in REASONS:
        raise KeyError(f"reason code {code!r} is not in core.delivery.reasons.REASONS: add it there "
                       "(and to docs/delivery.md)")


@dataclass
class Accounting:
    """Accounting for one layer of one run (see module docstring)."""

    layer: str
    source: str
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))  # (n,) id per source row
    rejected: dict[int, Issue] = field(default_factory=dict)
    repaired: dict[int, list[Issue]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    output: dict[str, Any] = field(default_factory=dict)
    loaded: int = 0
    _written: np.ndarray | None = None
    _repair_counts: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.ids = np.asarray(self.ids, dtype=object)
        self.source = str(self.source)
        self._file_name = Path(self.source).name

    @property
    def source_rows(self) -> int:
        return self.n_input

    @source_rows.setter
    def source_rows(self, n: int) -> None:
        """Tables read row by row (loaders): ``n`` rows whose ids are given with each rejection."""
        if len(self.ids) != n:
            self.ids = np.full(int(n), None, dtype=object)

    @property
    def file(self) -> str:
        return self._file_name

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
        _check_code(code)
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
        _check_code(how)
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

    def count_repair(self, how: str, n: int) -> None:
        """A repair counted without per-row records (bulk repairs of loaders)."""
        _check_code(how)
        self._repair_counts[how] += int(n)

    # ----------------------------------------------------------------- tables (loaders)
    def reject_rows(
        self,
        rows: np.ndarray | list[int],
        ids: np.ndarray | list[Any] | None,
        field_name: str | None,
        reason: str,
        message: str | list[str],
        values: np.ndarray | list[Any] | None = None,
    ) -> None:
        """Reject source rows whose ids come with them (tables whose ids are read by the loader)."""
        rows_arr = _rows(rows)
        if ids is not None:
            for r, fid in zip(rows_arr.tolist(), list(ids), strict=True):
                if r >= len(self.ids):
                    self.ids = np.concatenate([self.ids, np.full(r + 1 - len(self.ids), None, dtype=object)])
                if self.ids[r] is None:
                    self.ids[r] = None if fid is None or (isinstance(fid, float) and np.isnan(fid)) else fid
        msgs = [message] * len(rows_arr) if isinstance(message, str) else list(message)
        msgs = [m.split(": ", 2)[-1] if m.startswith(f"{self.file_name}: ") else m for m in msgs]
        vals = None if values is None else [None if _isnan(v) else v for v in values]
        self.reject(rows_arr, reason, msgs, field=field_name, value=vals)

    def reject_mask(
        self,
        df: pd.DataFrame,
        mask: pd.Series | np.ndarray,
        field_name: str | None,
        reason: str,
        message: str | Any,
        id_col: str | None = "id",
        value_col: str | None = None,
    ) -> pd.DataFrame:
        """Reject the rows of ``df`` where ``mask``; return the remaining rows.

        ``df.index`` must hold the 0-based source row; ``message`` may be a callable on the
        rejected sub-frame returning one message per row.
        """
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            return df
        bad = df[mask]
        msgs = message(bad) if callable(message) else message
        ids = bad[id_col].to_numpy() if id_col and id_col in bad else None
        vals = bad[value_col].to_numpy() if value_col and value_col in bad else None
        self.reject_rows(bad.index.to_numpy(), ids, field_name, reason, msgs, vals)
        return df[~mask].copy()

    @property
    def rejects(self) -> list[Issue]:
        """The rejections in source-row order."""
        return [self.rejected[r] for r in sorted(self.rejected)]

    def finish(self, loaded: int) -> None:
        """Loaders: ``loaded`` is the row count the database reports for this delivery; it must be
        the source rows minus the rejected ones."""
        self.loaded = int(loaded)
        if self.loaded != self.n_input - len(self.rejected):
            raise AccountingError(
                f"{self.layer}: {self.n_input} source rows != {self.loaded} loaded + {len(self.rejected)} rejected"
            )

    def require_accepted(self, n_accepted: int, what: str, hint: str) -> None:
        """Raise :class:`~core.delivery.errors.NothingAcceptedError` when no feature is accepted:
        publishing or loading would replace live data with nothing. The message names the file,
        the counts by reason and the first rejections."""
        if n_accepted > 0:
            return
        from core.delivery.errors import NothingAcceptedError

        codes = ", ".join(f"{k} {v}" for k, v in self.rejected_by_code().items())
        why = f"all {self.n_input} features were rejected ({codes})" if self.n_input else "it has no features"
        first = "; ".join(i.message for i in self.rejects[:3])
        raise NothingAcceptedError(self.source, f"{what}: {why}" + (f"; first: {first}" if first else ""),
                                   hint=hint)

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
        counts = Counter(i.code for issues in self.repaired.values() for i in issues)
        counts.update(self._repair_counts)
        return dict(counts.most_common())

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


#: the name the pipelines used before the delivery layer existed
RunReport = Accounting


def _isnan(v: Any) -> bool:
    return isinstance(v, float) and np.isnan(v)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.2f}"
    if isinstance(v, int) and v >= 10_000:
        return f"{v:,}"
    return str(v)
