"""The architecture contract (docs/CONTRIBUTING-helpers.md), enforced by `make test`.

* layers import one way (onemap > api > gis > pipelines > tiles > core; data only core/tiles;
  nothing but onemap imports onemap): `lint-imports`, configured in pyproject.toml;
* modules stay under 600 lines outside tests/;
* test helpers come from conftest.py fixtures, not imported by name (no F811 suppressions).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 600
F811 = "noqa: " + "F811"  # spelled in two parts so this file does not match itself


def python_files() -> list[str]:
    """Tracked and untracked (not ignored) Python files, relative to the repo root."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", "*.py"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout
    return sorted({p for p in out.splitlines() if (ROOT / p).is_file()})


def long_modules() -> dict[str, int]:
    out = {}
    for rel in python_files():
        if rel.startswith("tests/"):
            continue
        n = len((ROOT / rel).read_text(encoding="utf-8", errors="replace").splitlines())
        if n > MAX_LINES:
            out[rel] = n
    return out


def test_layer_contract() -> None:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert exe, "lint-imports missing: pip install -e '.[test]' (import-linter)"
    r = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"layer contract broken:\n{r.stdout[-4000:]}\n{r.stderr[-2000:]}"


def test_no_long_modules() -> None:
    offenders = long_modules()
    assert not offenders, f"modules over {MAX_LINES} lines (split them, one job each): {offenders}"


def test_no_f811_suppressions() -> None:
    hits = []
    for rel in python_files():
        for i, line in enumerate((ROOT / rel).read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if F811 in line:
                hits.append(f"{rel}:{i}")
    assert not hits, f"{len(hits)} F811 suppressions: {hits[:20]}"
