"""The Open Inference Protocol's pieces without a server: BYTES framing, raw and JSON tensor
forms, the detection contract's parameters and its one detections-to-tensors conversion."""

from __future__ import annotations

import numpy as np
import pytest

from service.errors import InvalidParameterError, InvalidTensorError
from service.oip_contract import (
    check_image_input,
    detections_to_tensors,
    output_names,
    request_options,
)
from service.oip_tensors import join_bytes, split_bytes, to_json_data, to_raw
from service.runtime import DetectParams, DetectResult
from ssd_core.inference import Detections


def test_bytes_elements_are_little_endian_length_prefixed():
    raw = join_bytes([b"ab", b"", b"xyz"])
    assert raw == b"\x02\x00\x00\x00ab\x00\x00\x00\x00\x03\x00\x00\x00xyz"
    assert split_bytes(raw, "IMAGE") == [b"ab", b"", b"xyz"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [(b"\x02\x00", "inside the 4-byte length of element 0"),
     (b"\x01\x00\x00\x00a\x05\x00\x00\x00abc", "element 1 declares 5 bytes, only 3 follow")],
)  # fmt: skip
def test_truncated_bytes_data_is_refused(raw, message):
    with pytest.raises(InvalidTensorError, match=message):
        split_bytes(raw, "IMAGE")


def test_raw_and_json_forms_of_numeric_and_bytes_tensors():
    scores = np.array([[0.5, 0.25]], dtype=np.float32)
    assert to_raw(scores, "FP32") == np.array([0.5, 0.25], dtype="<f4").tobytes()
    assert to_json_data(scores, "FP32") == [0.5, 0.25]
    labels = np.array([[b"face", b""]], dtype=object)
    assert to_raw(labels, "BYTES") == join_bytes([b"face", b""])
    assert to_json_data(labels, "BYTES") == ["face", ""]


def test_detections_become_tensors_padded_to_k():
    found = DetectResult("m", "1", 100, 50, Detections(
        boxes=[[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 100.0, 50.0]], scores=[0.9, 0.2], labels=[1, 5],
        names=("circle", "ring"),
    ))  # fmt: skip
    empty = DetectResult("m", "1", 10, 10, Detections(np.zeros((0, 4)), [], [], ()))
    tensors = detections_to_tensors([found, empty], k=3)
    assert tensors["NUM_DETECTIONS"].tolist() == [2, 0]
    assert tensors["BOXES"].shape == (2, 3, 4) and tensors["BOXES"].dtype == np.float32
    assert tensors["BOXES"][0].tolist() == [[1, 2, 3, 4], [0, 0, 100, 50], [0, 0, 0, 0]]
    assert tensors["SCORES"][0].tolist() == pytest.approx([0.9, 0.2, 0.0])
    assert tensors["CLASSES"].tolist() == [[1, 5, 0], [0, 0, 0]]
    assert tensors["LABELS"].tolist() == [[b"circle", b"ring", b""], [b"", b"", b""]]
    assert detections_to_tensors([found], k=1)["NUM_DETECTIONS"].tolist() == [1]


def test_request_parameters_map_to_detect_params():
    options = request_options(
        {"score_threshold": 1, "max_detections": 5.0, "classes": "face, 2", "timeout": 2_500_000,
         "priority": 3, "sequence_id": 7, "triton_enable_empty_final_response": True}
    )  # fmt: skip
    assert options.params == DetectParams(score_threshold=1.0, max_detections=5,
                                          classes=("face", "2"))  # fmt: skip
    assert options.timeout_s == 2.5
    assert request_options({}).params == DetectParams()


@pytest.mark.parametrize(
    ("parameters", "message"),
    [({"threshold": 0.5}, "unknown parameter 'threshold'"),
     ({"score_threshold": True}, "score_threshold must be a number"),
     ({"max_detections": 2.5}, "max_detections must be an integer"),
     ({"classes": 3}, "classes must be a string")],
)  # fmt: skip
def test_bad_parameters_are_refused(parameters, message):
    with pytest.raises(InvalidParameterError, match=message):
        request_options(parameters)


@pytest.mark.parametrize(
    ("shape", "count", "message"),
    [([2, 2], 4, r"expected \[B\] or \[B, 1\]"), ([0], 0, "B >= 1"),
     ([3], 2, "carries 2 elements"), ([5], 5, "at most 4 per request")],
)  # fmt: skip
def test_image_input_shape_is_checked(shape, count, message):
    with pytest.raises(InvalidTensorError, match=message):
        check_image_input("IMAGE", "BYTES", shape, count, max_images=4)


def test_outputs_default_to_all_and_unknown_ones_are_refused():
    assert output_names([]) == ("BOXES", "SCORES", "CLASSES", "LABELS", "NUM_DETECTIONS")
    assert output_names(["LABELS", "BOXES"]) == ("LABELS", "BOXES")
    with pytest.raises(InvalidTensorError, match="more than once"):
        output_names(["BOXES", "BOXES"])
