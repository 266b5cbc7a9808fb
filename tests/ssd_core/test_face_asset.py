"""The embedded default model: OpenCV's face detector as converted afresh, finding the face of a
real photo where OpenCV 4's cv2.dnn finds it, and none in a photo without faces."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import ssd_core
from ssd_core import DecoderConfig, SSDConfig, build_model
from ssd_core.inference import Predictor
from ssd_core.weights import load_caffe_weights, read_caffemodel
from tests.reference.face_files import face_detector_files, read_photo_rgb
from tests.reference.opencv_face import opencv_face_net, run_opencv

# The service's default SSD_SCORE_THRESHOLD. On the photos below the face scores 0.99998
# (astronaut) and 0.937 (camera); everything else stays below 0.14, most of it boxes of the
# conv8_2 / conv9_2 anchors, which lie largely outside the image.
SCORE_THRESHOLD = 0.3


@pytest.fixture(scope="module")
def shipped():
    path = ssd_core.default_model_path()
    assert path.exists(), f"the embedded face model is missing at {path}"
    return keras.saving.load_model(path)


@pytest.fixture(scope="module")
def predictor(shipped):
    return Predictor.from_model(shipped)


def test_default_model_is_the_face_detector_and_shapes_stays_shipped():
    models = ssd_core.embedded_models()
    assert ssd_core.default_model_path() == models["face"]
    assert models["face"].name == "ssd300_res10_face.keras"
    assert models["shapes"].name == "ssd7_shapes.keras" and models["shapes"].exists()


def test_shipped_weights_equal_a_fresh_conversion(shipped):
    fresh = build_model(SSDConfig.preset("ssd300_res10_face"))
    load_caffe_weights(fresh, face_detector_files()[1])
    assert shipped.ssd_config == fresh.ssd_config
    weighted = [layer for layer in fresh.layers if layer.weights]
    # One Keras layer per Caffe layer with blobs, by name: nothing left unconverted.
    assert {layer.name for layer in weighted} == set(read_caffemodel(face_detector_files()[1]))
    for layer in weighted:
        for ours, theirs in zip(
            shipped.get_layer(layer.name).get_weights(), layer.get_weights(), strict=True
        ):
            np.testing.assert_array_equal(ours, theirs, err_msg=layer.name)


def test_shipped_model_decodes_as_caffe_detection_output(shipped):
    # The prototxt's DetectionOutput: Caffe's defaults (0.01, 0.45, 400, 200), unclipped.
    assert shipped.decoder_config == DecoderConfig(clip=False)


def _faces(predictor: Predictor, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel boxes and scores above SCORE_THRESHOLD, through the service's inference path."""
    [found] = predictor.predict([image])
    found = found.filter(score_threshold=SCORE_THRESHOLD)
    return found.boxes, found.scores


@pytest.mark.parametrize("photo", ["astronaut.png", "camera.png"])
def test_the_one_face_is_where_opencv_finds_it(predictor, photo):
    image = read_photo_rgb(photo)
    boxes, scores = _faces(predictor, image)
    reference = run_opencv(opencv_face_net(), image).detections
    expected = reference[reference[:, 2] >= SCORE_THRESHOLD]
    assert len(expected) == 1 and len(boxes) == 1, (expected, boxes)
    scale = np.array([image.shape[1], image.shape[0]] * 2)
    np.testing.assert_allclose(boxes[0], expected[0, 3:] * scale, atol=0.5)
    assert scores[0] == pytest.approx(expected[0, 2], abs=1e-4)


def test_no_face_in_the_coffee_photo(predictor):
    boxes, _ = _faces(predictor, read_photo_rgb("coffee.png"))
    assert len(boxes) == 0
