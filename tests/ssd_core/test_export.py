"""Export: the SavedModel serves what the Keras model computes; Triton's config matches it."""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from ssd_core import DecoderConfig, SSDConfig, build_model
from ssd_core.export import (
    export_onnx,
    export_savedmodel,
    triton_config_pbtxt,
    write_triton_repository,
)


@pytest.fixture(scope="module")
def ssd7_inference():
    """SSD7 with random weights; its untrained softmax scores (~1/6) pass the 0.01 threshold,
    so every image yields many detections to compare."""
    keras.utils.set_random_seed(5)
    return build_model(SSDConfig.preset("ssd7"), "inference", DecoderConfig(max_detections=50))


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(6).integers(0, 256, size=(2, 300, 480, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def keras_outputs(ssd7_inference, images):
    outputs = ssd7_inference(images.astype(np.float32))
    return {name: keras.ops.convert_to_numpy(value) for name, value in outputs.items()}


@pytest.fixture(scope="module")
def savedmodel_dir(tmp_path_factory, ssd7_inference):
    return export_savedmodel(ssd7_inference, tmp_path_factory.mktemp("export") / "ssd7")


def assert_same_detections(actual: dict, expected: dict) -> None:
    assert expected["num_detections"].min() > 0, "no detections; the comparison would be vacuous"
    np.testing.assert_array_equal(actual["num_detections"], expected["num_detections"])
    np.testing.assert_array_equal(actual["labels"], expected["labels"])
    np.testing.assert_allclose(actual["scores"], expected["scores"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(actual["boxes"], expected["boxes"], rtol=1e-5, atol=1e-6)


def test_savedmodel_outputs_equal_keras_model_outputs(savedmodel_dir, images, keras_outputs):
    serving = tf.saved_model.load(str(savedmodel_dir)).signatures["serving_default"]
    outputs = {name: value.numpy() for name, value in serving(images=tf.constant(images)).items()}
    assert set(outputs) == {"boxes", "scores", "labels", "num_detections"}
    assert_same_detections(outputs, keras_outputs)


def test_savedmodel_signature_takes_uint8_batches_at_the_model_input_size(savedmodel_dir):
    serving = tf.saved_model.load(str(savedmodel_dir)).signatures["serving_default"]
    _, inputs = serving.structured_input_signature
    assert inputs["images"].dtype == tf.uint8
    assert inputs["images"].shape.as_list() == [None, 300, 480, 3]


def test_savedmodel_carries_its_ssd_config(savedmodel_dir):
    config = SSDConfig.load(savedmodel_dir / "assets.extra" / "ssd_config.json")
    assert config == SSDConfig.preset("ssd7")


def test_export_refuses_to_overwrite_a_savedmodel(savedmodel_dir, ssd7_inference):
    with pytest.raises(FileExistsError, match="already holds a SavedModel"):
        export_savedmodel(ssd7_inference, savedmodel_dir)


def test_export_refuses_a_directory_of_other_files(tmp_path, ssd7_inference):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="already holds other files"):
        export_savedmodel(ssd7_inference, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_an_interrupted_export_leaves_no_savedmodel_behind(tmp_path, ssd7_inference, monkeypatch):
    def disk_full(self, path):  # the last step, after the graph and variables are written
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(SSDConfig, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        export_savedmodel(ssd7_inference, tmp_path / "1")
    assert list(tmp_path.iterdir()) == []


def test_triton_config_pbtxt_declares_inputs_outputs_and_batching():
    text = triton_config_pbtxt(
        "ssd300_voc",
        {"images": ("uint8", (300, 300, 3))},
        {"scores": ("float32", (200,)), "num_detections": ("int32", ())},
        max_batch_size=16,
        max_queue_delay_us=500,
    )
    assert text == (
        'name: "ssd300_voc"\n'
        'platform: "tensorflow_savedmodel"\n'
        "max_batch_size: 16\n"
        "input [\n"
        '  {\n    name: "images"\n    data_type: TYPE_UINT8\n    dims: [ 300, 300, 3 ]\n  }\n'
        "]\n"
        "output [\n"
        '  {\n    name: "scores"\n    data_type: TYPE_FP32\n    dims: [ 200 ]\n  },\n'
        '  {\n    name: "num_detections"\n    data_type: TYPE_INT32\n    dims: [ 1 ]\n'
        "    reshape: { shape: [ ] }\n  }\n"
        "]\n"
        "dynamic_batching {\n  max_queue_delay_microseconds: 500\n}\n"
    )


def _pbtxt_tensors(text: str) -> dict[str, tuple[str, list[int]]]:
    pattern = r'name: "(\w+)"\s+data_type: (\w+)\s+dims: \[ ([\d, ]*) \]'
    return {
        name: (dtype, [int(d) for d in dims.split(",")])
        for name, dtype, dims in re.findall(pattern, text)
    }


def test_triton_repository_config_matches_the_exported_signature(tmp_path, ssd7_inference):
    model_dir = write_triton_repository(ssd7_inference, tmp_path / "repo", max_batch_size=4)
    assert model_dir == tmp_path / "repo" / "ssd7"
    savedmodel = model_dir / "1" / "model.savedmodel"
    assert (savedmodel / "saved_model.pb").is_file()
    text = (model_dir / "config.pbtxt").read_text()
    assert 'platform: "tensorflow_savedmodel"' in text
    assert "max_batch_size: 4" in text
    assert "dynamic_batching {" in text
    serving = tf.saved_model.load(str(savedmodel)).signatures["serving_default"]
    _, inputs = serving.structured_input_signature
    tensors = _pbtxt_tensors(text)
    triton_types = {tf.uint8: "TYPE_UINT8", tf.float32: "TYPE_FP32", tf.int32: "TYPE_INT32"}
    expected = {
        name: (triton_types[spec.dtype], spec.shape.as_list()[1:] or [1])
        for name, spec in {**inputs, **serving.structured_outputs}.items()
    }
    assert tensors == expected
    assert tensors["boxes"] == ("TYPE_FP32", [50, 4])


@pytest.mark.slow  # optional dependency (the `onnx` extra); about 8 s of conversion
def test_onnx_outputs_equal_keras_model_outputs(tmp_path, ssd7_inference, images, keras_outputs):
    pytest.importorskip("tf2onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    path = export_onnx(ssd7_inference, tmp_path / "ssd7.onnx")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    outputs = dict(zip(names, session.run(None, {"images": images}), strict=True))
    assert_same_detections(outputs, keras_outputs)
