"""`scripts/benchmark.py model --quick` runs end to end: every engine asked for is timed,
interleaved, with its ratio to TF, its stage split and its fraction of the measured GEMM peak."""

from __future__ import annotations

import pytest

from tests.scripts.benchmark_runs import run_quick


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[str, dict]:
    return run_quick("model", tmp_path_factory.mktemp("benchmark"))


def test_quick_model_benchmark_table_has_a_row_per_engine(quick_run):
    stdout, _ = quick_run
    rows = {
        tuple(cell.strip() for cell in line.strip("|").split("|")[:3])
        for line in stdout.splitlines()
        if line.startswith("| tf")
    }
    assert rows == {("tf", "fp32", "1"), ("tf-xla", "fp32", "1")}


def test_quick_model_benchmark_json_has_rates_ratios_and_stage_split(quick_run):
    _, report = quick_run
    assert report["preset"] == "ssd7"
    [tf_row, xla_row] = report["results"]
    for row in report["results"]:
        assert row["error"] is None, row
        assert row["images_per_second"] > 0 and row["median_images_per_second"] > 0
        assert row["network_ms"] > 0 and row["decoding_ms"] > 0
        assert 0 < row["fraction_of_peak"] < 2  # a measured peak, a counted FLOP load
    assert tf_row["vs_tf_fp32"] == 1.0
    assert xla_row["vs_tf_fp32"] == pytest.approx(
        xla_row["images_per_second"] / tf_row["images_per_second"]
    )
    assert {(r["batch_size"], r["score_threshold"]) for r in report["decoder_results"]} == {
        (1, 0.01), (1, 0.3),
    }  # fmt: skip


def test_quick_model_benchmark_counts_the_flops_of_the_conv_layers(quick_run):
    _, report = quick_run
    assert report["parameters"] == 213_904  # SSD7 with the 6 shape classes (README)
    # 96x160: feature maps 12x20, 6x10, 3x5, 1x2 with 4 boxes each.
    assert report["anchors"] == (240 + 60 + 15 + 2) * 4
    # conv1 alone: 5x5x3 -> 32 channels at 96x160, 2 FLOPs per multiply-add.
    assert report["flops_per_image"] > 2 * 96 * 160 * 32 * 5 * 5 * 3
    assert report["gemm_peak_flops"] > 1e9
    assert report["machine"]["logical_cpus"] >= 1


def test_conv_flops_of_a_known_layer_stack():
    import keras

    from scripts.benchmarks.model import conv_flops

    inputs = keras.Input((8, 10, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)  # 2*8*10*4*3*3*3 = 17280
    x = keras.layers.Conv2D(6, 1, strides=2, groups=2)(x)  # 2*4*5*6*1*1*2 = 480
    assert conv_flops(keras.Model(inputs, x)) == 17280 + 480
