"""`scripts/stress.py --quick`: the hostile-client scenarios of issue 12 against a real service
process (shipped model), with generous versions of the bounds the issue requires; the exact
bounds are measured by the full run (README "Reliability")."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import stress  # noqa: E402


def test_stress_quick_loses_mixes_up_and_leaks_nothing(tmp_path):
    out = tmp_path / "stress.json"
    stress.main(["--quick", "--scenarios", "stream,abort,connections,overload", "--out", str(out)])
    report = json.loads(out.read_text())
    rows = {row["scenario"]: row for row in report["rows"]}

    stream = rows["stream"]
    assert (stream["wrong"], stream["missing"], stream["duplicated"]) == (0, 0, 0)
    assert stream["answered"] == stream["sent"]
    assert stream["stream_statuses"] == ["OK", "OK"]
    assert stream["bad_items_answered_invalid_argument"] == stream["bad_items"] == 3
    assert stream["malformed_stream_status"] == "INVALID_ARGUMENT"
    assert stream["malformed_stream_answered_before"] == "20/20"
    assert stream["oversize_stream_status"] != "OK"

    abort = rows["abort"]
    assert abort["sent"] > 100
    assert abort["counted_499"] == abort["sent"]
    # Only the good requests ran, but for the odd client whose hang-up arrived after its
    # image was already in a batch (its result is then discarded).
    assert abort["images_computed"] - abort["probe_requests"] <= 0.05 * abort["sent"]
    assert abort["log_tracebacks"] == 0
    assert 1 <= abort["log_summary_lines"] <= 4  # once per second, not once per request
    assert abort["probe_failures"] == 0

    connections = rows["connections"]
    assert connections["healthz_failures"] == 0
    assert connections["healthz_p99_ms"] < 1000  # the bound is 100 ms (full run)
    assert connections["fds_after"] <= connections["fds_before"] + 2

    overload = rows["overload"]
    assert overload["by_status"].get("http 503", 0) > 0
    assert overload["by_status"].get("grpc RESOURCE_EXHAUSTED", 0) > 0
    assert overload["http_503_p99_ms"] < 2000  # was up to 28 s; the bound is 50 ms
    assert overload["grpc_exhausted_p99_ms"] < 2000

    assert report["end"]["rss_mb"] < 1.5 * report["start"]["rss_mb"]
    assert report["end"]["threads"] <= report["start"]["threads"] + 8
