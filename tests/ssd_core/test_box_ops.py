"""Tests for ssd_core.box_ops against hand-computed values and a NumPy reference IoU."""

import numpy as np
import pytest

from ssd_core.box_ops import (
    box_area,
    centers_to_corners,
    clip_boxes,
    corners_to_centers,
    pairwise_iou,
    pairwise_iou_numpy,
)


def _np_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Plain double loop IoU of normalised xyxy boxes; 0 where the union is empty."""
    out = np.zeros((len(a), len(b)))
    for i, p in enumerate(a):
        for j, q in enumerate(b):
            iw = max(min(p[2], q[2]) - max(p[0], q[0]), 0.0)
            ih = max(min(p[3], q[3]) - max(p[1], q[1]), 0.0)
            inter = iw * ih
            union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter
            out[i, j] = inter / union if union > 0 else 0.0
    return out


def _random_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    corners = rng.uniform(0.0, 1.0, size=(n, 2, 2))
    lo, hi = corners.min(axis=1), corners.max(axis=1)
    return np.concatenate([lo, hi], axis=1).astype(np.float32)


def test_corners_to_centers_hand_computed():
    out = corners_to_centers(np.array([[0.1, 0.2, 0.5, 0.8]], np.float32)).numpy()
    np.testing.assert_allclose(out, [[0.3, 0.5, 0.4, 0.6]], atol=1e-7)


def test_centers_to_corners_hand_computed():
    out = centers_to_corners(np.array([[0.3, 0.5, 0.4, 0.6]], np.float32)).numpy()
    np.testing.assert_allclose(out, [[0.1, 0.2, 0.5, 0.8]], atol=1e-7)


def test_center_corner_round_trip_keeps_batch_dims():
    boxes = _random_boxes(np.random.default_rng(0), 24).reshape(2, 3, 4, 4)
    out = centers_to_corners(corners_to_centers(boxes)).numpy()
    assert out.shape == (2, 3, 4, 4)
    np.testing.assert_allclose(out, boxes, atol=1e-6)


def test_box_area_hand_computed_and_inverted_box_is_zero():
    boxes = np.array([[0.0, 0.0, 0.5, 0.4], [0.6, 0.1, 0.2, 0.9]], np.float32)
    np.testing.assert_allclose(box_area(boxes).numpy(), [0.2, 0.0], atol=1e-7)


def test_clip_boxes_clamps_to_unit_square():
    boxes = np.array([[-0.2, 0.1, 1.3, 0.9]], np.float32)
    np.testing.assert_allclose(clip_boxes(boxes).numpy(), [[0.0, 0.1, 1.0, 0.9]])


def test_clip_boxes_rejects_empty_range():
    with pytest.raises(ValueError, match="min_value <= max_value"):
        clip_boxes(np.zeros((1, 4), np.float32), 1.0, 0.0)


def test_pairwise_iou_hand_computed():
    a = np.array([[0.0, 0.0, 2.0, 2.0]], np.float32)
    b = np.array(
        [[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 1.0, 1.0], [5.0, 5.0, 6.0, 6.0], [0.0, 0.0, 2.0, 2.0]],
        np.float32,
    )
    np.testing.assert_allclose(pairwise_iou(a, b).numpy(), [[1 / 7, 1 / 4, 0.0, 1.0]], atol=1e-6)


def test_pairwise_iou_of_zero_area_boxes_is_zero_not_nan():
    point = np.array([[0.5, 0.5, 0.5, 0.5]], np.float32)
    line = np.array([[0.2, 0.5, 0.8, 0.5]], np.float32)
    out = pairwise_iou(np.concatenate([point, line]), np.concatenate([point, line])).numpy()
    np.testing.assert_array_equal(out, np.zeros((2, 2)))


def test_pairwise_iou_matches_numpy_reference():
    rng = np.random.default_rng(1)
    a, b = _random_boxes(rng, 17), _random_boxes(rng, 11)
    np.testing.assert_allclose(pairwise_iou(a, b).numpy(), _np_iou(a, b), atol=1e-6)


def test_pairwise_iou_batched_equals_per_image():
    rng = np.random.default_rng(2)
    a = _random_boxes(rng, 3 * 5).reshape(3, 5, 4)
    b = _random_boxes(rng, 3 * 7).reshape(3, 7, 4)
    out = pairwise_iou(a, b).numpy()
    assert out.shape == (3, 5, 7)
    for image in range(3):
        np.testing.assert_allclose(out[image], _np_iou(a[image], b[image]), atol=1e-6)


def test_pairwise_iou_rejects_wrong_last_axis():
    with pytest.raises(ValueError, match=r"boxes2 must have shape \(\.\.\., 4\)"):
        pairwise_iou(np.zeros((2, 4), np.float32), np.zeros((2, 5), np.float32))


def test_pairwise_iou_numpy_equals_tf_to_the_bit():
    # The host decoder's NMS decisions equal the TF decoder's only if the IoUs do.
    rng = np.random.default_rng(3)
    a = _random_boxes(rng, 2 * 13).reshape(2, 13, 4)
    b = _random_boxes(rng, 2 * 9).reshape(2, 9, 4)
    out = pairwise_iou_numpy(a, b)
    assert out.dtype == np.float32 and out.shape == (2, 13, 9)
    np.testing.assert_array_equal(out, pairwise_iou(a, b).numpy())


def test_pairwise_iou_numpy_of_zero_area_boxes_is_zero_not_nan():
    boxes = np.array([[0.5, 0.5, 0.5, 0.5], [0.2, 0.5, 0.8, 0.5]], np.float32)
    np.testing.assert_array_equal(pairwise_iou_numpy(boxes, boxes), np.zeros((2, 2)))


def test_pairwise_iou_numpy_rejects_wrong_last_axis():
    with pytest.raises(ValueError, match=r"boxes2 must have shape \(\.\.\., K, 4\)"):
        pairwise_iou_numpy(np.zeros((2, 4), np.float32), np.zeros((2, 5), np.float32))
