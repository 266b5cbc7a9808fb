"""Anchor matching and target encoding on hand-made cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from ssd_core.config import SSDConfig
from ssd_core.matching import TargetEncoder, bipartite_match, match_anchors

VARIANCES = (0.1, 0.1, 0.2, 0.2)
# Coordinates are multiples of powers of two, so IoUs like 0.5 are exact in float32.
ANCHORS = np.array(
    [
        [0.0, 0.0, 0.5, 0.5],  # 0
        [0.0, 0.0, 0.5, 0.25],  # 1: IoU 0.5 with anchor 0's box
        [0.0, 0.0, 0.5, 0.125],  # 2: IoU 0.25 with anchor 0's box
        [0.5, 0.5, 1.0, 1.0],  # 3: far away
    ],
    np.float32,
)


def run(boxes, labels, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    cls, box = match_anchors(
        np.asarray(boxes, np.float32).reshape(-1, 4),
        np.asarray(labels, np.int32),
        ANCHORS,
        VARIANCES,
        **kwargs,
    )
    return cls.numpy(), box.numpy()


def test_box_below_half_iou_still_gets_its_best_anchor() -> None:
    # IoU with anchor 3 is 0.0625 / 0.25 = 0.25, with the others 0
    cls, _ = run([[0.75, 0.75, 1.0, 1.0]], [4])
    np.testing.assert_array_equal(cls, [0, 0, 0, 4])


def test_anchor_at_exactly_half_iou_is_positive() -> None:
    cls, _ = run([[0.0, 0.0, 0.5, 0.5]], [1])
    np.testing.assert_array_equal(cls, [1, 1, 0, 0])  # IoUs 1.0, 0.5, 0.25, 0.0


def test_two_boxes_competing_for_one_anchor() -> None:
    """Box 0 takes anchor 0 (IoU 1); box 1 (IoU 0.75 with anchor 0) falls back to its next best
    anchor 1 (IoU 0.09375 / 0.21875 = 0.43) through the bipartite step, though below 0.5."""
    boxes = [[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.25, 0.375]]
    anchors = np.array([[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.25, 0.5]], np.float32)
    cls, _ = match_anchors(
        np.array(boxes, np.float32), np.array([1, 2], np.int32), anchors, VARIANCES
    )
    np.testing.assert_array_equal(cls.numpy(), [1, 2])


def test_per_prediction_anchor_takes_the_box_with_highest_iou() -> None:
    """Anchor 2 overlaps box 0 by 0.25 and box 1 by 0.0625 / 0.09375 = 2/3: label of box 1.

    Bipartite first: box 0 -> anchor 0 (IoU 1), box 1 -> anchor 1 (IoU 0.75).
    """
    boxes = [[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.5, 0.1875]]
    cls, _ = run(boxes, [1, 3])
    np.testing.assert_array_equal(cls, [1, 3, 3, 0])


def test_no_boxes_gives_all_background_and_zero_targets() -> None:
    cls, box = run(np.zeros((0, 4)), np.zeros((0,)))
    np.testing.assert_array_equal(cls, [0, 0, 0, 0])
    np.testing.assert_array_equal(box, np.zeros((4, 4)))


def test_padding_rows_are_ignored() -> None:
    plain = run([[0.0, 0.0, 0.5, 0.5]], [1])
    padded = run([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0], [0, 0, 0, 0]], [1, 0, -1])
    for a, b in zip(plain, padded, strict=True):
        np.testing.assert_array_equal(a, b)


def test_neutral_band_is_marked_ignore() -> None:
    cls, _ = run([[0.0, 0.0, 0.5, 0.5]], [1], neg_iou_limit=0.2)
    np.testing.assert_array_equal(cls, [1, 1, -1, 0])  # anchor 2 at IoU 0.25 is in [0.2, 0.5)


def test_box_targets_are_encoded_with_variances() -> None:
    _, box = run([[0.75, 0.75, 1.0, 1.0]], [2])  # best anchor 3 (IoU 0.25)
    # centre (0.875, 0.875) vs (0.75, 0.75), size 0.25 vs 0.5:
    # t_xy = (0.875 - 0.75) / 0.5 / 0.1 = 2.5, t_wh = log(0.5) / 0.2
    expected = [2.5, 2.5, math.log(0.5) / 0.2, math.log(0.5) / 0.2]
    np.testing.assert_allclose(box[3], expected, atol=1e-5)
    np.testing.assert_array_equal(box[:3], np.zeros((3, 4)))


def test_bipartite_match_leaves_non_overlapping_box_unmatched() -> None:
    iou = tf.constant([[0.0, 0.0], [0.3, 0.6]])
    np.testing.assert_array_equal(bipartite_match(iou).numpy(), [-1, 1])


def test_matching_runs_in_tf_data_with_variable_box_counts() -> None:
    encoder = TargetEncoder(SSDConfig.preset("ssd7"))
    samples = [
        np.array([[0.1, 0.1, 0.4, 0.5]], np.float32),
        np.zeros((0, 4), np.float32),
        np.array([[0.5, 0.5, 0.9, 0.8], [0.0, 0.6, 0.2, 1.0]], np.float32),
    ]

    def generate():
        for boxes in samples:
            yield boxes, np.arange(1, len(boxes) + 1, dtype=np.int32)

    dataset = tf.data.Dataset.from_generator(
        generate,
        output_signature=(
            tf.TensorSpec([None, 4], tf.float32),
            tf.TensorSpec([None], tf.int32),
        ),
    ).map(encoder)
    results = list(dataset.as_numpy_iterator())
    counts = [int((cls > 0).sum()) for cls, _ in results]
    assert counts[1] == 0
    assert counts[0] >= 1 and counts[2] >= 2
    assert set(np.unique(results[2][0])) <= {0, 1, 2}
    assert results[0][0].shape == (encoder.num_anchors,)


def test_rejects_neutral_limit_above_positive_threshold() -> None:
    with pytest.raises(ValueError, match="neg_iou_limit <= pos_iou"):
        run([[0.0, 0.0, 0.5, 0.5]], [1], neg_iou_limit=0.6)
