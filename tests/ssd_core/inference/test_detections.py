"""Padded model outputs to typed per-image detections in original pixels."""

from __future__ import annotations

import numpy as np
import pytest

from ssd_core import fields
from ssd_core.inference import Detections, place, split_outputs, to_detections

NAMES = ("background", "cat", "dog")
PADDED = {
    fields.BOXES: np.array(
        [
            [[0.1, 0.2, 0.5, 1.2], [0.0, 0.0, 0.5, 0.5], [0, 0, 0, 0]],
            [[4.1, 4.0, 4.8, 4.9], [0.9, 0.9, 1.3, 1.4], [0, 0, 0, 0]],
        ],
        np.float32,
    ),
    fields.SCORES: np.array([[0.5, 0.9, 0.0], [0.93, 0.7, 0.0]], np.float32),
    fields.LABELS: np.array([[1, 2, 0], [1, 2, 0]], np.int32),
    fields.NUM_DETECTIONS: np.array([2, 2], np.int32),
}


def test_padding_is_dropped_per_image():
    rows = split_outputs(PADDED)
    assert [len(row[fields.SCORES]) for row in rows] == [2, 2]
    np.testing.assert_array_equal(rows[0][fields.LABELS], [1, 2])


def test_boxes_map_to_pixels_sorted_by_score_and_clipped():
    [row, _] = split_outputs(PADDED)
    found = to_detections(row, place(100, 200, (50, 50), "stretch"), NAMES)
    assert found.names == ("dog", "cat")
    np.testing.assert_array_equal(found.labels, [2, 1])
    np.testing.assert_allclose(found.scores, [0.9, 0.5])
    np.testing.assert_allclose(found.boxes, [[0, 0, 100, 50], [20, 20, 100, 100]], atol=1e-4)
    assert found.boxes.dtype == np.float32 and found.labels.dtype == np.int32


def test_boxes_wholly_outside_the_image_are_not_detections():
    [_, row] = split_outputs(PADDED)
    found = to_detections(row, place(100, 200, (50, 50), "stretch"), NAMES)
    assert found.names == ("dog",)
    np.testing.assert_allclose(found.boxes, [[180, 90, 200, 100]], atol=1e-4)


def test_filter_by_score_labels_and_count_keeps_the_best():
    found = Detections(np.zeros((3, 4)), [0.9, 0.5, 0.2], [2, 1, 1], ("dog", "cat", "cat"))
    assert found.filter(score_threshold=0.2).names == ("dog", "cat")  # above, not equal
    assert found.filter(labels={1}).names == ("cat", "cat")
    assert found.filter(max_detections=1).names == ("dog",)
    assert len(found.filter(labels=set())) == 0


def test_detections_are_read_only_and_checked():
    found = Detections(np.zeros((1, 4)), [0.9], [1], ("cat",))
    with pytest.raises(ValueError, match="read-only"):
        found.boxes[0, 0] = 1.0
    with pytest.raises(ValueError, match="one row per detection"):
        Detections(np.zeros((2, 4)), [0.9], [1], ("cat",))
