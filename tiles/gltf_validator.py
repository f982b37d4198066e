"""Run the Khronos glTF validator (npm ``gltf-validator`` in ``node_modules``) on glb files.

The validator is a test/CI tool, never needed to build tiles. ``validator_available()`` tells
whether node and the package are installed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
VALIDATOR_DIR = REPO_ROOT / "node_modules" / "gltf-validator"

_SCRIPT = r"""
const fs = require('fs');
const validator = require(process.argv[1]);
(async () => {
  const out = [];
  for (const path of process.argv.slice(2)) {
    try {
      const bytes = new Uint8Array(fs.readFileSync(path));
      const r = await validator.validateBytes(bytes, {maxIssues: 200, format: 'glb'});
      out.push({path, numErrors: r.issues.numErrors, numWarnings: r.issues.numWarnings,
                numInfos: r.issues.numInfos, numHints: r.issues.numHints,
                messages: r.issues.messages.slice(0, 50)});
    } catch (e) {
      out.push({path, numErrors: 1, numWarnings: 0, numInfos: 0, numHints: 0,
                messages: [{code: 'EXCEPTION', message: String(e), severity: 0}]});
    }
  }
  process.stdout.write(JSON.stringify(out));
})();
"""


def validator_available() -> bool:
    return shutil.which("node") is not None and (VALIDATOR_DIR / "index.js").exists()


def validate_glb_files(paths: Iterable[Path | str], timeout: float = 600.0) -> list[dict[str, Any]]:
    """Validate glb files; one report per file with numErrors/numWarnings/numInfos/messages."""
    paths = [str(p) for p in paths]
    if not paths:
        return []
    if not validator_available():
        raise FileNotFoundError(f"glTF validator not installed: {VALIDATOR_DIR} (run `npm install`)")
    reports: list[dict[str, Any]] = []
    for i in range(0, len(paths), 200):  # keep the command line short
        proc = subprocess.run(
            ["node", "-e", _SCRIPT, str(VALIDATOR_DIR / "index.js"), *paths[i:i + 200]],
            capture_output=True, text=True, timeout=timeout, check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"gltf-validator failed: {proc.stderr.strip()[:2000]}")
        reports.extend(json.loads(proc.stdout))
    return reports
