"""Accounting of one load: every source row is either loaded or rejected with a reason.

``loaded == source_rows - rejected`` is checked when a layer is finished (:meth:`LayerReport.finish`);
a loader that loses rows without reporting them fails loudly. Rejections are recorded per row with
the file, the 0-based row in the source, the feature id, the field and a reason code + message.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

#: Reason codes (free-form codes are allowed; these are the ones the loaders use).
REASONS: dict[str, str] = {
    "missing_value": "a required field is empty",
    "missing_id": "the id field is empty",
    "duplicate_id": "id already used by an earlier row of the same source",
    "duplicate": "same key as an earlier row or an already loaded row",
    "unparsable_value": "a value that cannot be read as the field's type",
    "absurd_value": "value outside the accepted range",
    "unknown_value": "value not in the accepted list",
    "unknown_reference": "refers to an id that is not loaded",
    "inconsistent_lifecycle": "status and status timestamps do not form a legal lifecycle",
    "empty_geometry": "no geometry",
    "wrong_geometry_type": "geometry type not accepted by this layer",
    "self_intersection": "self-intersecting geometry (repaired with make_valid when it keeps an area)",
    "zero_area": "polygon with (near) zero area",
    "zero_length": "line with (near) zero length",
    "missing_height": "no height and no floors",
    "absurd_height": "height <= 0 or > 500 m, or floors > 120",
}


class AccountingError(RuntimeError):
    """A loader lost or double-counted rows: a bug, never a data problem."""


@dataclass(frozen=True)
class Reject:
    file: str
    row: int
    feature_id: str | None
    field: str | None
    reason: str
    message: str
    value: str | None = None


@dataclass
class LayerReport:
    layer: str
    source: str
    source_rows: int = 0
    loaded: int = 0
    rejects: list[Reject] = field(default_factory=list)
    repaired: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    _rejected_rows: set[int] = field(default_factory=set, repr=False)

    @property
    def file(self) -> str:
        return Path(self.source).name

    def note(self, message: str) -> None:
        self.notes.append(message)
        log.info("%s: %s", self.layer, message)

    def reject_rows(
        self,
        rows: np.ndarray | list[int],
        ids: np.ndarray | list[Any] | None,
        field_name: str | None,
        reason: str,
        message: str | list[str],
        values: np.ndarray | list[Any] | None = None,
    ) -> None:
        rows_list = [int(r) for r in np.asarray(rows).tolist()]
        file_name = self.file
        n = len(rows_list)
        ids_list = list(ids) if ids is not None else [None] * n
        msgs = [message] * n if isinstance(message, str) else list(message)
        vals = list(values) if values is not None else [None] * n
        for r, fid, msg, val in zip(rows_list, ids_list, msgs, vals, strict=True):
            if r in self._rejected_rows:
                continue
            self._rejected_rows.add(r)
            fid_s = None if fid is None or (isinstance(fid, float) and np.isnan(fid)) else str(fid)
            if not msg.startswith(f"{file_name}: "):  # not already decorated (pipelines.sources)
                where = f"{file_name}: {'feature ' + fid_s if fid_s else 'row ' + str(r)}"
                if field_name:
                    where += f", field {field_name!r}"
                msg = f"{where}: {msg}"
            self.rejects.append(
                Reject(
                    file_name,
                    r,
                    fid_s,
                    field_name,
                    reason,
                    msg,
                    None if val is None or _isnan(val) else str(val),
                )
            )

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

    def finish(self, loaded: int) -> None:
        self.loaded = int(loaded)
        if self.loaded != self.source_rows - len(self.rejects):
            raise AccountingError(
                f"{self.layer}: {self.source_rows} source rows != {self.loaded} loaded + {len(self.rejects)} rejected"
            )

    def rejects_by_reason(self) -> dict[str, int]:
        return dict(Counter(r.reason for r in self.rejects).most_common())

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "source": self.source,
            "source_rows": self.source_rows,
            "loaded": self.loaded,
            "rejected": len(self.rejects),
            "rejected_by_reason": self.rejects_by_reason(),
            "repaired": dict(self.repaired),
            "notes": self.notes,
            "seconds": round(self.seconds, 3),
            "rejects": [asdict(r) for r in sorted(self.rejects, key=lambda r: r.row)],
        }


def _isnan(v: Any) -> bool:
    return isinstance(v, float) and np.isnan(v)


@dataclass
class LoadReport:
    layers: list[LayerReport] = field(default_factory=list)
    derived: dict[str, Any] = field(default_factory=dict)

    def add(self, layer: LayerReport) -> LayerReport:
        self.layers.append(layer)
        return layer

    @property
    def total_rejected(self) -> int:
        return sum(len(layer.rejects) for layer in self.layers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "layers": [layer.to_dict() for layer in self.layers],
            "derived": self.derived,
            "total_rejected": self.total_rejected,
        }

    def write_json(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=1, default=str), encoding="utf-8")
        return path

    def summary_lines(self, max_rejects: int = 20) -> list[str]:
        lines: list[str] = []
        for layer in self.layers:
            rate = f", {layer.loaded / layer.seconds:,.0f} rows/s" if layer.seconds > 0 and layer.loaded else ""
            lines.append(
                f"{layer.layer:<16} {layer.source_rows:>10,} source  {layer.loaded:>10,} loaded  "
                f"{len(layer.rejects):>7,} rejected  ({layer.seconds:.1f} s{rate})"
            )
            if layer.repaired:
                lines.append("    repaired: " + ", ".join(f"{k} {v}" for k, v in layer.repaired.items()))
            if layer.rejects:
                lines.append(
                    "    rejected by reason: " + ", ".join(f"{k} {v}" for k, v in layer.rejects_by_reason().items())
                )
                for r in sorted(layer.rejects, key=lambda r: r.row)[:max_rejects]:
                    lines.append(f"    [{r.reason}] {r.message}")
                if len(layer.rejects) > max_rejects:
                    lines.append(f"    ... {len(layer.rejects) - max_rejects} more in the JSON report")
            for note in layer.notes:
                lines.append(f"    note: {note}")
        for key, value in self.derived.items():
            lines.append(f"derived {key}: {value}")
        return lines
