"""DecoderConfig: validation, JSON round trip, the legacy keyword form, the one score rule."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from ssd_core.decoder_config import (
    DecoderConfig,
    check_score_threshold,
    passes_score_threshold,
)

NON_DEFAULT = DecoderConfig(
    method="fast", score_threshold=0.25, iou_threshold=0.6, top_k=50, max_detections=17, clip=False
)


def test_defaults_are_caffe_detection_output():
    assert DecoderConfig() == DecoderConfig("caffe", 0.01, 0.45, 400, 200, clip=True)


def test_json_round_trip_keeps_non_default_values():
    assert DecoderConfig.from_json(NON_DEFAULT.to_json()) == NON_DEFAULT
    assert DecoderConfig.from_dict(NON_DEFAULT.to_dict()) == NON_DEFAULT


def test_the_old_keyword_form_reads_as_a_config():
    legacy = {"decoder": "fast", "score_threshold": 0.25, "iou_threshold": 0.6, "top_k": 50,
              "max_detections": 17, "clip": False}  # fmt: skip
    assert DecoderConfig.from_dict(legacy) == NON_DEFAULT


def test_unknown_fields_are_refused_by_name():
    with pytest.raises(ValueError, match=r"unknown DecoderConfig field\(s\) \['nms'\]"):
        DecoderConfig.from_dict({"nms": 0.5})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"method": "soft"}, "method must be one of"),
        ({"score_threshold": 1.0}, r"score_threshold must be in \[0, 1\)"),
        ({"score_threshold": -0.01}, r"score_threshold must be in \[0, 1\)"),
        ({"iou_threshold": 1.5}, r"iou_threshold must be in \[0, 1\]"),
        ({"top_k": 0}, "top_k must be an integer >= 1"),
        ({"max_detections": 2.5}, "max_detections must be an integer >= 1"),
        ({"max_detections": True}, "max_detections must be an integer >= 1"),
        ({"clip": "no"}, "clip must be true or false"),
    ],
)
def test_invalid_values_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        DecoderConfig().replace(**changes)


def test_score_threshold_range_is_zero_inclusive_one_exclusive():
    assert check_score_threshold(0) == 0.0
    assert check_score_threshold(0.999) == 0.999
    with pytest.raises(ValueError, match=r"must be in \[0, 1\)"):
        check_score_threshold(1.0)


def test_a_score_equal_to_the_threshold_does_not_pass_in_numpy_or_tensorflow():
    scores = np.array([0.2, 0.3, 0.4], np.float32)
    expected = [False, False, True]
    threshold = float(np.float32(0.3))
    assert passes_score_threshold(scores, threshold).tolist() == expected
    assert passes_score_threshold(tf.constant(scores), threshold).numpy().tolist() == expected
