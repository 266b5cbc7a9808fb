"""LiteRT export: the .tflite file (network and decoder, builtin ops only) run in the LiteRT
interpreter (`ai-edge-litert`) gives the Keras model's detections on the shipped face and shapes
models: scores to 1e-4, boxes to 1e-3 normalised, same classes and counts."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

import ssd_core
from ssd_core import fields
from ssd_core.data.shapes import render_scene
from ssd_core.export import export_litert, litert_config_path
from ssd_core.inference import Predictor, load_inference_model
from tests.reference.face_files import read_photo_rgb
from tests.ssd_core.engines.parity import assert_same_detections

litert = pytest.importorskip("ai_edge_litert.interpreter", reason="the 'litert' extra")
FACE_PHOTOS = ("astronaut.png", "camera.png", "coffee.png")


def run_litert(path: Path, images: np.ndarray) -> dict[str, np.ndarray]:
    """The .tflite file's signature outputs for a (B, H, W, 3) uint8 batch."""
    interpreter = litert.Interpreter(model_path=str(path))
    interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], images.shape)
    interpreter.allocate_tensors()
    return interpreter.get_signature_runner()(images=images)


def load(name: str) -> ssd_core.SSD:
    return load_inference_model(ssd_core.embedded_models()[name])


def face_batch(model: ssd_core.SSD) -> np.ndarray:
    """The face photos as the service prepares them for `model`."""
    predictor = Predictor.from_model(model)
    return np.stack([predictor.preprocess(read_photo_rgb(name))[0] for name in FACE_PHOTOS])


@pytest.mark.parametrize("name", ["face", "shapes"])
def test_litert_model_gives_the_keras_detections(name, tmp_path):
    model = load(name)
    size = model.ssd_config.image_size
    if name == "face":
        images = face_batch(model)
    else:
        rng = np.random.default_rng(4)
        images = np.stack([render_scene(rng, *size).image for _ in range(3)])
    path = export_litert(model, tmp_path / f"{name}.tflite")
    outputs = run_litert(path, images)
    reference = {
        k: keras.ops.convert_to_numpy(v) for k, v in model(images.astype(np.float32)).items()
    }
    assert reference["num_detections"].min() > 0
    np.testing.assert_array_equal(outputs["num_detections"], reference["num_detections"])
    np.testing.assert_array_equal(outputs[fields.LABELS], reference[fields.LABELS])
    assert_same_detections(reference, outputs, model.decoder_config.score_threshold)
    if name == "face":  # the parity is worth something: the astronaut's face is found
        assert outputs["scores"][0, 0] > 0.9


def test_litert_export_writes_the_config_beside_the_file(tmp_path):
    model = load("shapes")
    decoder = model.decoder_config.replace(max_detections=20)
    path = export_litert(model, tmp_path / "out" / "shapes.tflite", decoder)
    config = json.loads(litert_config_path(path).read_text())
    assert litert_config_path(path).name == "shapes.json"
    assert config["class_names"] == list(model.ssd_config.class_names)
    outputs = run_litert(path, np.zeros((1, *model.ssd_config.image_size, 3), np.uint8))
    assert outputs["boxes"].shape == (1, 20, 4)  # the decoder override reached the graph
