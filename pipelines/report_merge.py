"""The accounting of a partitioned run, merged from its tasks with memory bounded by one task.

Every task of a partitioned run writes ``report.json`` (its rejections and repairs, numbered by
source row) and ``written.npy`` (the source rows it put in the tiles). :class:`MergedReport`
reads them one task at a time and keeps, per source row, one byte (written / rejected), plus the
counts by code; the issues themselves (every rejected and repaired feature, which can be
hundreds of thousands: a delivery without heights repairs every building) are spooled to disk,
sorted by row within each task, and merged by row (``heapq.merge``) whenever the report is
written. ``report.json`` is the same, byte for byte, as :meth:`Accounting.write` of the whole
accounting, and the checks of :meth:`Accounting.finalize` are the same (input = written +
rejected, no row written twice, repaired ⊂ written).
"""

from __future__ import annotations

import heapq
import json
import logging
import shutil
import tempfile
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from core.delivery.accounting import REPORT_JSON, REPORT_TXT, AccountingError, Issue, _fmt

log = logging.getLogger(__name__)

_WRITTEN, _REJECTED = 1, 2
_OPTIONS = orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY


def issue_from_json(d: dict[str, Any]) -> Issue:
    """An :class:`Issue` from its ``as_dict`` form (a task's ``report.json``)."""
    return Issue(d["row"], d["id"], d["code"], d["message"], d.get("field"), d.get("value"), d.get("file"),
                 d.get("related_id"))


class MergedReport:
    """Read-side twin of :class:`core.delivery.Accounting` for a partitioned run (module docstring)."""

    def __init__(self, layer: str, source: str, n_input: int, folders: Iterable[Path],
                 skip_notes: Callable[[str], bool] | None = None) -> None:
        self.layer, self.source, self.n_input = layer, str(source), int(n_input)
        self.output: dict[str, Any] = {}
        self._state = np.zeros(self.n_input, np.uint8)
        self._by_code: Counter[str] = Counter()
        self._by_how: Counter[str] = Counter()
        self.n_rejected = self.n_repaired = 0
        self._spool = Path(tempfile.mkdtemp(prefix="onemap-report-"))
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self._spool), True)
        self._files: dict[str, list[Path]] = {"rejected": [], "repaired": []}
        notes: dict[str, None] = {}
        for i, folder in enumerate(folders):
            data = orjson.loads((folder / REPORT_JSON).read_bytes())
            notes.update(dict.fromkeys(n for n in data["notes"] if not (skip_notes and skip_notes(n))))
            rejected = [issue_from_json(d).as_dict() for d in data["rejected"]]
            repaired = [{"row": issues[0]["row"], "id": issues[0]["id"], "how": [d["code"] for d in issues],
                         "issues": [issue_from_json(d).as_dict() for d in issues]} for issues in data["repaired"]]
            del data
            self._by_code.update(d["code"] for d in rejected)
            self._by_how.update(h for d in repaired for h in d["how"])
            self.n_rejected += len(rejected)
            self.n_repaired += len(repaired)
            rows = np.array([d["row"] for d in rejected], np.int64)
            self._mark(rows, _REJECTED)
            self._mark(np.load(folder / "written.npy").astype(np.int64, copy=False), _WRITTEN)
            for kind, items in (("rejected", rejected), ("repaired", repaired)):
                if items:
                    path = self._spool / f"{kind}-{i}.jsonl"
                    with path.open("wb") as f:
                        for d in sorted(items, key=lambda d: d["row"]):
                            f.write(orjson.dumps(d) + b"\n")
                    self._files[kind].append(path)
        self.notes = list(notes)

    def _mark(self, rows: np.ndarray, state: int) -> None:
        if len(rows) == 0:
            return
        if rows.min() < 0 or rows.max() >= self.n_input:
            raise AccountingError(f"{self.layer}: rows outside 0..{self.n_input - 1}")
        uniq, counts = np.unique(rows, return_counts=True)
        twice = uniq[(counts > 1) | (self._state[uniq] != 0)]
        if len(twice):
            what = "written twice or written and rejected" if state == _WRITTEN else "reported twice"
            raise AccountingError(f"{self.layer}: rows {what}: {twice[:10].tolist()}")
        self._state[rows] = state

    # ----------------------------------------------------------------- the issues, by row
    def issues(self, kind: str) -> Iterator[dict[str, Any]]:
        """Every rejected (``kind='rejected'``) or repaired feature, in source-row order, as in
        :meth:`Accounting.to_dict`."""
        handles = [p.open("rb") for p in self._files[kind]]
        try:
            streams = [(orjson.loads(line) for line in h) for h in handles]
            yield from heapq.merge(*streams, key=lambda d: d["row"])
        finally:
            for h in handles:
                h.close()

    def issue_for(self, feature_id: str) -> tuple[str, list[Any]]:
        """As :meth:`Accounting.issue_for` for a rejected or repaired feature (tests, tooling); the
        merged report holds no id of the rows without an issue: ``('unreported', [])`` for them."""
        for d in self.issues("rejected"):
            if d["id"] == feature_id:
                return "rejected", [issue_from_json(d)]
        for d in self.issues("repaired"):
            if d["id"] == feature_id:
                return "repaired", [issue_from_json(i) for i in d["issues"]]
        return "unreported", []

    def _first(self, kind: str, n: int) -> list[dict[str, Any]]:
        out = []
        for d in self.issues(kind):
            if len(out) >= n:
                break
            out.append(d)
        return out

    # ----------------------------------------------------------------- Accounting's API
    def note(self, message: str) -> None:
        """As :meth:`Accounting.note` (the client's remarks: no DEM, no boundary, layer figures)."""
        self.notes.append(message)
        log.info("%s: %s", self.layer, message)

    @property
    def counts(self) -> dict[str, int]:
        return {"input": self.n_input, "written": self.n_input - self.n_rejected,
                "repaired": self.n_repaired, "rejected": self.n_rejected}

    def rejected_by_code(self) -> dict[str, int]:
        return dict(self._by_code.most_common())

    def repaired_by_how(self) -> dict[str, int]:
        return dict(self._by_how.most_common())

    def finalize(self) -> None:
        """The checks of :meth:`Accounting.finalize`, on the per-row states."""
        missing = np.flatnonzero(self._state == 0)
        if len(missing):
            written = int((self._state == _WRITTEN).sum())
            raise AccountingError(f"{self.layer}: {self.n_input} input != {written} written + {self.n_rejected} "
                                  f"rejected; unaccounted rows {missing[:10].tolist()}")
        stray = [d["row"] for d in self.issues("repaired") if self._state[d["row"]] != _WRITTEN]
        if stray:
            raise AccountingError(f"{self.layer}: repaired rows not written: {stray[:10]}")

    def require_accepted(self, n_accepted: int, what: str, hint: str) -> None:
        """As :meth:`Accounting.require_accepted`."""
        if n_accepted > 0:
            return
        from core.delivery.errors import NothingAcceptedError

        codes = ", ".join(f"{k} {v}" for k, v in self.rejected_by_code().items())
        why = f"all {self.n_input} features were rejected ({codes})" if self.n_input else "it has no features"
        first = "; ".join(d["message"] for d in self._first("rejected", 3))
        raise NothingAcceptedError(self.source, f"{what}: {why}" + (f"; first: {first}" if first else ""),
                                   hint=hint)

    def _head(self) -> dict[str, Any]:
        return {"layer": self.layer, "source": self.source, "counts": self.counts,
                "rejected_by_code": self.rejected_by_code(), "repaired_by_how": self.repaired_by_how(),
                "notes": list(self.notes), "output": dict(self.output)}

    def to_dict(self) -> dict[str, Any]:
        """The whole report in memory (tests, small runs); :meth:`write` streams it."""
        return {**self._head(), "rejected": list(self.issues("rejected")), "repaired": list(self.issues("repaired"))}

    def summary_text(self, max_lines: int = 50) -> str:
        """As :meth:`Accounting.summary_text`."""
        c = self.counts
        lines = [f"{self.layer}: {self.source}",
                 f"  input {c['input']}  written {c['written']} (repaired {c['repaired']})  rejected {c['rejected']}"]
        if self.output:
            lines.append("  output: " + ", ".join(f"{k} {_fmt(v)}" for k, v in self.output.items()))
        lines.extend(f"  note: {note}" for note in self.notes)
        if self.n_repaired:
            lines.append("  repaired by how: " + ", ".join(f"{k} {v}" for k, v in self.repaired_by_how().items()))
        if self.n_rejected:
            lines.append("  rejected by reason: " + ", ".join(f"{k} {v}" for k, v in self.rejected_by_code().items()))
            lines.append("  rejected features:")
            lines.extend(f"    [{d['code']}] {d['message']}" for d in self._first("rejected", max_lines))
            if self.n_rejected > max_lines:
                lines.append(f"    ... {self.n_rejected - max_lines} more in {REPORT_JSON}")
        if self.n_repaired:
            lines.append("  repaired features:")
            lines.extend(f"    [{i['code']}] {i['message']}" for d in self._first("repaired", max_lines)
                         for i in d["issues"])
            if self.n_repaired > max_lines:
                lines.append(f"    ... {self.n_repaired - max_lines} more in {REPORT_JSON}")
        return "\n".join(lines) + "\n"

    def write(self, out_dir: Path) -> tuple[Path, Path]:
        """report.json (byte for byte what :meth:`Accounting.write` writes, streamed) and report.txt."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        json_path, txt_path = out_dir / REPORT_JSON, out_dir / REPORT_TXT
        head = orjson.dumps(self._head(), option=_OPTIONS)
        with json_path.open("wb") as f:
            f.write(head[:-2])  # without "\n}"
            for kind in ("rejected", "repaired"):
                f.write(b',\n  "' + kind.encode() + b'": [')
                first = True
                for d in self.issues(kind):
                    f.write((b"\n    " if first else b",\n    ")
                            + orjson.dumps(d, option=_OPTIONS).replace(b"\n", b"\n    "))
                    first = False
                f.write(b"]" if first else b"\n  ]")
            f.write(b"\n}")
        txt_path.write_text(self.summary_text(), encoding="utf-8")
        return json_path, txt_path


def write_layers_json(path: Path, reports: list[Any]) -> None:
    """``{"layers": [report.to_dict(), ...]}`` as ``json.dumps(..., ensure_ascii=False, indent=1)``
    writes it (the vegetation run's report.json), with the issues of every :class:`MergedReport`
    streamed from its spool instead of held in memory."""
    marks: dict[str, tuple[MergedReport, str]] = {}
    layers = []
    for i, r in enumerate(reports):
        if isinstance(r, MergedReport):
            d = r._head()
            for kind in ("rejected", "repaired"):
                d[kind] = mark = f"\x00onemap-issues-{i}-{kind}\x00"
                marks[json.dumps(mark)] = (r, kind)
            layers.append(d)
        else:
            layers.append(r.to_dict())
    text = json.dumps({"layers": layers}, ensure_ascii=False, indent=1)
    with Path(path).open("w", encoding="utf-8") as f:
        pos = 0
        for at, mark in sorted((text.index(m), m) for m in marks):
            line = text[text.rfind("\n", 0, at) + 1:at]  # '<pad>"rejected": '
            pad = line[:len(line) - len(line.lstrip(" "))]
            f.write(text[pos:at])
            r, kind = marks[mark]
            first = True
            for d in r.issues(kind):
                item = json.dumps(d, ensure_ascii=False, indent=1).replace("\n", "\n " + pad)
                f.write(("[\n " if first else ",\n ") + pad + item)
                first = False
            f.write("[]" if first else "\n" + pad + "]")
            pos = at + len(mark)
        f.write(text[pos:])
