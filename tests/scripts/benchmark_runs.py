"""Runs `scripts/benchmark.py <command> --quick` as a user would, in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_quick(command: str, out_dir: Path, *extra: str) -> tuple[str, dict[str, Any]]:
    """(stdout, the JSON report) of `benchmark.py COMMAND --quick`; fails on a non-zero exit."""
    out = out_dir / f"{command}.json"
    result = subprocess.run(
        [sys.executable, "scripts/benchmark.py", command, "--quick", "--out", str(out), *extra],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout, json.loads(out.read_text())
