"""scripts/export.py: a `.keras` training model in, a Triton repository that serves it out.

(Named test_export_script.py: tests/ssd_core/test_export.py has the module name test_export.)
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from ssd_core import SSDConfig, build_model, to_inference
from ssd_core.fields import LABELS

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "export.py"


def run(*argv: str) -> int:
    spec = importlib.util.spec_from_file_location("export_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(module.build_parser().parse_args([str(a) for a in argv]))


def test_triton_export_of_a_training_model_serves_its_detections(tmp_path):
    keras.utils.set_random_seed(8)
    model = build_model(SSDConfig.preset("ssd7"))
    model.save(tmp_path / "ssd7.keras")
    argv = ["--model", tmp_path / "ssd7.keras", "--format", "triton", "--out", tmp_path / "repo"]
    assert run(*argv, "--max-batch-size", "2", "--max-detections", "30", "--name", "shapes") == 0

    config = (tmp_path / "repo" / "shapes" / "config.pbtxt").read_text()
    assert 'name: "shapes"' in config
    assert "max_batch_size: 2" in config
    assert "dims: [ 30, 4 ]" in config
    serving = tf.saved_model.load(str(tmp_path / "repo" / "shapes" / "1" / "model.savedmodel"))
    images = np.random.default_rng(9).integers(0, 256, size=(1, 300, 480, 3), dtype=np.uint8)
    served = serving.signatures["serving_default"](images=tf.constant(images))
    decoder = model.decoder_config.replace(max_detections=30)
    expected = to_inference(model, decoder)(images.astype(np.float32))
    assert int(expected["num_detections"][0]) > 0
    np.testing.assert_array_equal(served[LABELS].numpy(), np.asarray(expected[LABELS]))
    np.testing.assert_allclose(
        served["boxes"].numpy(), np.asarray(expected["boxes"]), rtol=1e-5, atol=1e-6
    )


def test_non_ssd_model_is_rejected(tmp_path):
    inputs = keras.Input((4,))
    keras.Model(inputs, keras.layers.Dense(1)(inputs)).save(tmp_path / "dense.keras")
    argv = ["--model", tmp_path / "dense.keras", "--format", "savedmodel", "--out", tmp_path / "sm"]
    assert run(*argv) == 2
    assert not (tmp_path / "sm").exists()


def test_a_truncated_model_is_one_error_naming_it(tmp_path, caplog):
    model = build_model(SSDConfig.preset("ssd7"))
    model.save(tmp_path / "ssd7.keras")
    data = (tmp_path / "ssd7.keras").read_bytes()
    (tmp_path / "ssd7.keras").write_bytes(data[: len(data) // 3])
    argv = ["--model", tmp_path / "ssd7.keras", "--format", "savedmodel", "--out", tmp_path / "sm"]
    with caplog.at_level(logging.ERROR, logger="export"):
        assert run(*argv) == 2
    [message] = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert message.startswith(f"{tmp_path / 'ssd7.keras'}: not a readable .keras model")
    assert not (tmp_path / "sm").exists()


def test_a_missing_model_is_one_error_naming_it(tmp_path, caplog):
    argv = ["--model", tmp_path / "nope.keras", "--format", "onnx", "--out", tmp_path / "m.onnx"]
    with caplog.at_level(logging.ERROR, logger="export"):
        assert run(*argv) == 2
    assert f"{tmp_path / 'nope.keras'}: no such file (expected a .keras model)" in caplog.text


def _overrides(*argv: str) -> dict:
    spec = importlib.util.spec_from_file_location("export_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    base = ["--model", "m.keras", "--format", "savedmodel", "--out", "out"]
    return module.decoder_overrides(module.build_parser().parse_args([*base, *argv]))


def test_clip_is_a_decoder_override_left_to_the_model_unless_given():
    assert "clip" not in _overrides()
    assert _overrides("--no-clip") == {"clip": False}
    assert _overrides("--clip", "--top-k", "50") == {"clip": True, "top_k": 50}


@pytest.fixture(scope="module")
def shapes_model_and_data(tmp_path_factory):
    """A copy of the shipped shapes model, 8 calibration scenes and 16 held-out scenes."""
    import ssd_core
    from ssd_core.data.shapes import write_shapes_dataset

    root = tmp_path_factory.mktemp("quantize_cli")
    model = root / "shapes.keras"
    shutil.copy(ssd_core.embedded_models()["shapes"], model)
    calibration = write_shapes_dataset(root / "calibration", 8, 0, seed=0, height=192, width=320)
    held_out = write_shapes_dataset(root / "held_out", 0, 16, seed=1, height=192, width=320)
    return model, f"voc:{calibration}", f"voc:{held_out}"


def quantize_argv(model, calibration, held_out, *extra):
    return ["--model", model, "--quantize", "int8", "--engine", "onnxruntime",
            "--calibration", calibration, "--guard", held_out, *extra]  # fmt: skip


def test_quantize_int8_writes_the_network_beside_the_model_and_guards_it(
    shapes_model_and_data, caplog
):
    pytest.importorskip("onnxruntime")
    model, calibration, held_out = shapes_model_and_data
    with caplog.at_level(logging.INFO):
        assert run(*quantize_argv(model, calibration, held_out)) == 0
    [folder] = (model.parent / ".ssd_engines").glob("shapes-*/onnxruntime-int8")
    assert (folder / "network.onnx").exists() and (folder / "calibration.json").exists()
    assert "onnxruntime int8 guard passed on 16 images: VOC07 mAP fp32" in caplog.text


def test_a_failed_quantization_guard_exits_with_status_3(shapes_model_and_data, caplog):
    pytest.importorskip("onnxruntime")
    model, calibration, held_out = shapes_model_and_data
    # An impossible guard: int8 would have to beat fp32 by a whole mAP point.
    assert run(*quantize_argv(model, calibration, held_out, "--max-map-drop", "-1")) == 3
    assert "guard FAILED" in caplog.text


def test_quantize_needs_calibration_images(shapes_model_and_data, caplog):
    model, _, _ = shapes_model_and_data
    assert run("--model", model, "--quantize", "int8") == 2
    assert "--quantize needs --calibration" in caplog.text


def test_litert_format_writes_the_tflite_file_and_its_config(shapes_model_and_data, tmp_path):
    pytest.importorskip("ai_edge_litert")
    model, _, _ = shapes_model_and_data
    assert run("--model", model, "--format", "litert", "--out", tmp_path / "shapes.tflite") == 0
    assert (tmp_path / "shapes.tflite").stat().st_size > 100_000  # weights inside
    assert (tmp_path / "shapes.json").exists()
