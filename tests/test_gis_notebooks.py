"""The analysis notebooks run top to bottom against a loaded database (the tiny district)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.gis_helpers import tiny_delivery, tiny_loaded  # noqa: F401 - fixtures

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


@pytest.mark.parametrize("name", ["event_hotspots_sla.ipynb", "patrol_coverage_mileage.ipynb"])
def test_notebook_runs(name: str, tiny_loaded, use_database: str, tmp_path: Path) -> None:  # noqa: ANN001, F811
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS.parent)}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # at least one chart was drawn
