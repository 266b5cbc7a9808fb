"""The detector wrapper: pixel conversion and filtering, no retracing, model loading."""

from __future__ import annotations

import hashlib
import logging

import numpy as np
import pytest

import ssd_core
from service.detector import Detector, RawDetections, load_detector, to_pixel_detections
from service.settings import Settings
from tests.service.conftest import INPUT_SIZE, BrightRegionModel

LABELS = ("background", "cat", "dog")
RAW = RawDetections(
    boxes=np.array([[0.1, 0.2, 0.5, 0.6], [-0.1, 0.5, 1.2, 1.0], [0.0, 0.0, 0.5, 0.5]], np.float32),
    scores=np.array([0.5, 0.9, 0.2], np.float32),
    classes=np.array([1, 2, 1], np.int32),
)


def convert(**overrides):
    options = {"width": 200, "height": 100, "label_names": LABELS, "score_threshold": 0.3,
               "max_detections": 10} | overrides  # fmt: skip
    return to_pixel_detections(RAW, **options)


def test_boxes_scale_to_pixels_sorted_by_score_and_clipped():
    detections = convert()
    assert [(d.label, d.class_id, round(d.score, 3)) for d in detections] == [
        ("dog", 2, 0.9),
        ("cat", 1, 0.5),
    ]
    assert detections[0].box == pytest.approx((0.0, 50.0, 200.0, 100.0))  # clipped to the image
    assert detections[1].box == pytest.approx((20.0, 20.0, 100.0, 60.0))


def test_boxes_wholly_outside_the_image_are_not_detections():
    raw = RawDetections(
        boxes=np.array(
            [[4.1, 4.0, 4.8, 4.9], [0.2, 1.5, 0.6, 2.0], [0.9, 0.9, 1.3, 1.4]], np.float32
        ),
        scores=np.array([0.93, 0.8, 0.7], np.float32),
        classes=np.array([1, 1, 2], np.int32),
    )
    options = {"width": 200, "height": 100, "label_names": LABELS, "score_threshold": 0.3}
    [inside] = to_pixel_detections(raw, max_detections=10, **options)
    assert (inside.label, inside.box) == ("dog", pytest.approx((180.0, 90.0, 200.0, 100.0)))


def test_score_threshold_class_filter_and_max_detections():
    assert [d.score for d in convert(score_threshold=0.1)] == pytest.approx([0.9, 0.5, 0.2])
    assert [d.label for d in convert(score_threshold=0.1, classes=frozenset({1}))] == ["cat"] * 2
    assert [d.label for d in convert(max_detections=1)] == ["dog"]


def test_forward_is_traced_once_for_every_padded_batch_size(tiny_config):
    detector = Detector(BrightRegionModel(tiny_config), version="t")
    detector.warm_up((1, 2, 4, 8))
    for size in (1, 2, 4, 8, 2, 1):
        detector.predict_batch(np.zeros((size, *INPUT_SIZE, 3), np.uint8))
    assert detector.trace_count == 1


def test_load_detector_reads_a_saved_model_and_hashes_it(tmp_path):
    config = ssd_core.SSDConfig.preset("ssd7", image_size=INPUT_SIZE)
    path = tmp_path / "m.keras"
    ssd_core.build_model(config, mode="training").save(path)
    detector = load_detector(path)
    assert detector.version == hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    assert detector.config == config
    [result] = detector.predict_batch(np.zeros((1, *INPUT_SIZE, 3), np.uint8))
    assert result.boxes.shape[1:] == (4,)  # a training-mode file is served in inference mode
    assert len(result.boxes) == len(result.scores) == len(result.classes)


def test_without_any_model_a_random_ssd7_is_served_with_a_warning(monkeypatch, caplog, tmp_path):
    monkeypatch.setattr(
        ssd_core, "default_model_path", lambda: tmp_path / "absent.keras", raising=False
    )
    with caplog.at_level(logging.WARNING, logger="service.detector"):
        detector = load_detector(None)
    assert (detector.name, detector.version) == ("ssd7", "random-init")
    assert detector.config == ssd_core.SSDConfig.preset("ssd7")
    assert "RANDOMLY INITIALISED" in caplog.text


def test_settings_read_ssd_prefixed_environment(monkeypatch):
    monkeypatch.setenv("SSD_MAX_BATCH_SIZE", "16")
    monkeypatch.setenv("SSD_MODEL_PATH", "")  # compose passes unset variables as ""
    settings = Settings()
    assert (settings.max_batch_size, settings.model_path, settings.http_port) == (16, None, 8080)


def test_settings_reject_a_missing_model_file(monkeypatch, tmp_path):
    monkeypatch.setenv("SSD_MODEL_PATH", str(tmp_path / "nope.keras"))
    with pytest.raises(ValueError, match="does not exist"):
        Settings()
