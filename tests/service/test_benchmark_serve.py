"""`scripts/benchmark.py serve --quick`: two real service processes, both protocols' client."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import benchmark  # noqa: E402


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["http", "grpc", "oip-http", "oip-grpc"])
def test_serve_benchmark_quick_compares_batching_on_and_off(tmp_path, protocol):
    out = tmp_path / "serve.json"
    code = benchmark.main(["serve", "--quick", "--protocol", protocol, "--out", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert code == 0
    assert [(r["mode"], r["concurrency"]) for r in rows] == [
        ("batching on", 1), ("batching on", 4), ("batching off", 1), ("batching off", 4),
    ]  # fmt: skip
    assert all(r["requests"] > 0 and r["errors"] == 0 for r in rows)
    assert all(r["mean_batch"] == 1.0 for r in rows if r["mode"] == "batching off")
    assert all(r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"] for r in rows)
