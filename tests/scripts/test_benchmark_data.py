"""`scripts/benchmark.py data --quick` runs both augmentation chains in both threading variants,
and `--stages` profiles every stage of both chains."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_benchmark(tmp_path: Path, *extra: str) -> tuple[str, dict]:
    out = tmp_path / "data.json"
    result = subprocess.run(
        [sys.executable, "scripts/benchmark.py", "data", "--quick", "--out", str(out), *extra],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout, json.loads(out.read_text())


def test_quick_data_benchmark_times_every_chain_and_variant(tmp_path):
    stdout, report = run_benchmark(tmp_path)
    rows = {(row["chain"], row["variant"]): row for row in report["results"]}
    assert set(rows) == {
        (chain, variant)
        for chain in ("crop-first", "stepwise")
        for variant in ("one-core", "parallel")
    }
    for row in rows.values():
        assert row["images_per_second"] > 0 and row["images_per_cpu_second"] > 0
    assert "crop-first / stepwise, one-core, per CPU-second" in stdout


def test_quick_data_benchmark_stages_cover_both_chains(tmp_path):
    _, report = run_benchmark(tmp_path, "--stages")
    stages = report["stages_cpu_ms"]
    assert list(stages["crop-first"]) == [
        "read + decode",
        "window, boxes",
        "read crop (+ flip)",
        "photometric",
        "fill + resize",
        "encode targets",
    ]
    assert "expand (fill)" in stages["stepwise"]
    assert all(value > 0 for costs in stages.values() for value in costs.values())
