"""Accounting of one load: :class:`LayerReport` is the delivery layer's
:class:`~core.delivery.accounting.Accounting` (every source row loaded or rejected with a reason
code of :mod:`core.delivery.reasons`; ``loaded`` is the row count the database reports, checked by
:meth:`~core.delivery.accounting.Accounting.finish`) with the load's timing and JSON layout;
:class:`LoadReport` collects the layers of one command.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.delivery.accounting import Accounting, AccountingError

__all__ = ["AccountingError", "LayerReport", "LoadReport"]

log = logging.getLogger(__name__)


@dataclass
class LayerReport(Accounting):
    seconds: float = 0.0

    def rejects_by_reason(self) -> dict[str, int]:
        return self.rejected_by_code()

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "source": self.source,
            "source_rows": self.source_rows,
            "loaded": self.loaded,
            "rejected": len(self.rejected),
            "rejected_by_reason": self.rejected_by_code(),
            "repaired": self.repaired_by_how(),
            "notes": self.notes,
            "seconds": round(self.seconds, 3),
            "rejects": [
                {"file": i.file, "row": i.row, "feature_id": i.id, "field": i.field, "reason": i.code,
                 "message": i.message, "value": i.value}
                for i in self.rejects
            ],
        }


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
            if layer.repaired_by_how():
                lines.append("    repaired: " + ", ".join(f"{k} {v}" for k, v in layer.repaired_by_how().items()))
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
