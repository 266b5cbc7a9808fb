"""`scripts/benchmark.py image --quick`: full decode + resize against the served image path
(reduced DCT scale), interleaved, with the reduction the served path used."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import benchmark  # noqa: E402
import pytest  # noqa: E402


def test_image_benchmark_quick_times_both_paths_for_every_size(tmp_path, capsys):
    out = tmp_path / "image.json"
    assert benchmark.main(["image", "--quick", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    rows = {tuple(r["jpeg"]): r for r in report["rows"]}
    assert set(rows) == {(480, 640), (900, 1200)}
    # 128x208 model input: 640x480 is 3x wide, 3.75x high (1/2); 1200x900 is 5.8x (1/4).
    assert rows[(480, 640)]["reduction"] == 2 and rows[(900, 1200)]["reduction"] == 4
    for row in report["rows"]:
        assert row["full_ms"] > 0 and row["served_ms"] > 0
        assert row["speedup"] == pytest.approx(row["full_ms"] / row["served_ms"])
    assert "| 640x480 |" in capsys.readouterr().out
