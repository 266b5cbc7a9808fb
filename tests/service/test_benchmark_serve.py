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
    report = json.loads(out.read_text())
    rows = report["rows"]
    assert code == 0
    assert [(r["mode"], r["concurrency"]) for r in rows] == [
        ("batching on", 1), ("batching on", 4), ("batching off", 1), ("batching off", 4),
    ]  # fmt: skip
    assert all(r["requests"] > 0 and r["errors"] == 0 for r in rows)
    assert all(r["mean_batch"] == 1.0 for r in rows if r["mode"] == "batching off")
    assert all(r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"] for r in rows)
    # Where the time went, server side: every stage measured (OIP answers: no serialisation).
    stages = ("decode", "queue", "model", "decoding")
    assert all(r[f"{stage}_ms"] >= 0 for r in rows for stage in stages)
    assert all(r["model_ms"] > 0 for r in rows)
    # CPU accounting: the service computed; the clients' share is what the service could not use.
    assert all(r["service_cores"] > 0 and r["client_cores"] > 0 for r in rows)
    # The model's own numbers, timed before and after, and the service against them.
    assert len(report["reference"]) == 2
    summary = report["summary"]
    assert summary["model_batch1_ms"] > 0 and summary["image_ms"] > 0
    assert summary["one_client_p50_over_model_and_image"] > 0
    assert summary["throughput_over_model_batch16"] > 0
    assert (
        summary["throughput_over_model_batch16_per_cpu_left"]
        >= (summary["throughput_over_model_batch16"])
    )
    # The CPU budget: the model's own CPU per image is part of the service's per request, and
    # the ceiling that per-request CPU allows is at least what the service reached (it cannot
    # use more than the cores the clients left; 10% for the two CPU clocks' resolution).
    assert 0 < summary["model_batch16_cpu_ms_per_image"] < summary["service_cpu_ms_per_request"]
    assert summary["other_cpu_ms_per_request"] > 0
    most = rows[1]  # batching on, 4 clients
    assert summary["throughput_ceiling_rps"] >= 0.9 * most["throughput_rps"]
    assert summary["model_batch1_after_idle_ms"] > 0
    assert report["engine"]
    if protocol == "grpc":  # the bare call's floor, measured beside the service
        floor = report["grpc_floor"]
        assert [row["concurrency"] for row in floor] == [1, 4]
        assert all(row["requests"] > 0 and row["errors"] == 0 for row in floor)
        # An empty answer is faster than a detection and costs the server less CPU.
        assert floor[0]["p50_ms"] < rows[0]["p50_ms"]
        assert summary["floor_cpu_ms_per_request"] < summary["service_cpu_ms_per_request"]
        assert summary["best_throughput_over_model_batch16"] > 0
