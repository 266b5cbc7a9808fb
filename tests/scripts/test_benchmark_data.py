"""`scripts/benchmark.py data --quick` runs both augmentation chains in both threading variants,
and `--stages` profiles every stage of both chains."""

from __future__ import annotations

from pathlib import Path

from tests.scripts.benchmark_runs import run_quick


def run_benchmark(tmp_path: Path, *extra: str) -> tuple[str, dict]:
    return run_quick("data", tmp_path, *extra)


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
