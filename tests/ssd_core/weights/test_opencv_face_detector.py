"""OpenCV's Caffe face detector converted by `load_caffe_weights` against OpenCV 4's own Caffe
implementation (`cv2.dnn`), on real photos and generated images: anchors, raw head outputs and
the final detections."""

from __future__ import annotations

import numpy as np
import pytest

from ssd_core import SSDConfig, build_model, generate_anchors, to_inference
from ssd_core.weights import load_caffe_weights
from tests.reference.face_files import face_detector_files, read_photo_rgb
from tests.reference.opencv_face import opencv_face_net, resize_rgb, run_opencv


def _generated_image() -> np.ndarray:
    """Smooth random colour blobs plus noise, 240x320 RGB uint8."""
    rng = np.random.default_rng(11)
    coarse = rng.uniform(0, 255, size=(6, 8, 3)).astype(np.float32)
    import cv2

    smooth = cv2.resize(coarse, (320, 240), interpolation=cv2.INTER_CUBIC)
    return np.clip(smooth + rng.normal(0, 12, smooth.shape), 0, 255).astype(np.uint8)


IMAGES = {
    "astronaut": lambda: read_photo_rgb("astronaut.png"),
    "camera": lambda: read_photo_rgb("camera.png"),
    "coffee": lambda: read_photo_rgb("coffee.png"),
    "generated": _generated_image,
}


@pytest.fixture(scope="module")
def config() -> SSDConfig:
    return SSDConfig.preset("ssd300_res10_face")


@pytest.fixture(scope="module")
def model(config):
    converted = build_model(config)
    load_caffe_weights(converted, face_detector_files()[1])
    return converted


@pytest.fixture(scope="module")
def decoding(model):
    return to_inference(model, model.decoder_config.replace(clip=False))


@pytest.fixture(scope="module")
def net():
    return opencv_face_net()


@pytest.fixture(scope="module", params=sorted(IMAGES))
def case(request, net, model):
    """(image name, OpenCV outputs, our raw outputs on the same 300x300 image)."""
    image = IMAGES[request.param]()
    reference = run_opencv(net, image)
    ours = model(resize_rgb(image)[None], training=False)
    raw = {key: np.asarray(value)[0] for key, value in ours.items()}
    return request.param, reference, raw


def test_face_detector_has_8892_anchors_equal_to_opencv_priorbox(config, net):
    reference = run_opencv(net, read_photo_rgb("coffee.png"))
    anchors = generate_anchors(config)
    assert anchors.shape == (8892, 4)
    np.testing.assert_allclose(anchors, reference.anchors, rtol=0, atol=1e-5)
    np.testing.assert_allclose(reference.variances, np.tile(config.variances, (8892, 1)), atol=1e-7)


def test_raw_box_regression_equals_opencv_mbox_loc(case):
    _, reference, raw = case
    scale = np.abs(reference.loc).max()
    np.testing.assert_allclose(raw["bbox_regression"], reference.loc, rtol=1e-4, atol=1e-4 * scale)


def test_softmaxed_class_scores_equal_opencv_mbox_conf(case):
    _, reference, raw = case
    logits = raw["cls_logits"].astype(np.float64)
    scores = np.exp(logits - logits.max(axis=1, keepdims=True))
    scores /= scores.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(scores, reference.conf, rtol=0, atol=1e-4)


def test_caffe_decoder_without_clip_reproduces_opencv_detection_out(case, decoding):
    name, reference, _ = case
    image = IMAGES[name]()
    out = decoding(resize_rgb(image)[None], training=False)
    count = int(out["num_detections"][0])
    expected = reference.detections
    assert count == len(expected), name
    # OpenCV emits one class's detections by descending score, as ours are sorted.
    np.testing.assert_array_equal(np.asarray(out["labels"][0, :count]), expected[:, 1])
    np.testing.assert_allclose(np.asarray(out["scores"][0, :count]), expected[:, 2], atol=1e-3)
    np.testing.assert_allclose(np.asarray(out["boxes"][0, :count]), expected[:, 3:], atol=1e-3)
