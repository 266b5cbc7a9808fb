"""`scripts/benchmark.py model --quick` runs end to end and reports every model and mode."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[str, dict]:
    out = tmp_path_factory.mktemp("benchmark") / "model.json"
    result = subprocess.run(
        [sys.executable, "scripts/benchmark.py", "model", "--quick", "--out", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout, json.loads(out.read_text())


def test_quick_model_benchmark_table_has_a_row_per_model_and_mode(quick_run):
    stdout, _ = quick_run
    rows = {
        tuple(cell.strip() for cell in line.strip("|").split("|")[:3])
        for line in stdout.splitlines()
        if line.startswith("| raw ") or line.startswith("| decoded ")
    }
    expected = {
        (model, mode, "1") for model in ("raw", "decoded") for mode in ("eager", "function", "xla")
    }
    assert rows == expected


def test_quick_model_benchmark_json_has_positive_throughput_for_every_mode(quick_run):
    _, report = quick_run
    assert report["preset"] == "ssd7"
    assert len(report["results"]) == 6
    for row in report["results"]:
        assert row["error"] is None, row
        assert row["images_per_second"] > 0
        # images/s and ms/batch are two views of the same timing (batch size 1).
        assert row["images_per_second"] == pytest.approx(1000.0 / row["ms_per_batch"])


def test_quick_model_benchmark_reports_parameters_and_anchors(quick_run):
    _, report = quick_run
    assert report["parameters"] == 213_904  # SSD7 with the 6 shape classes (README)
    # 96x160: feature maps 12x20, 6x10, 3x5, 1x2 with 4 boxes each.
    assert report["anchors"] == (240 + 60 + 15 + 2) * 4
