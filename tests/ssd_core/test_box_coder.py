"""Tests for ssd_core.box_coder: hand-computed Caffe CENTER_SIZE codes and exact inverses."""

import math

import numpy as np
import pytest

from ssd_core.box_coder import decode_boxes, decode_boxes_numpy, encode_boxes

VARIANCES = (0.1, 0.1, 0.2, 0.2)
# Centre (0.4, 0.3), size (0.4, 0.2).
ANCHOR = np.array([[0.2, 0.2, 0.6, 0.4]], np.float32)


def _random_boxes(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    centre = rng.uniform(0.1, 0.9, size=(*shape, 2))
    size = rng.uniform(0.05, 0.6, size=(*shape, 2))
    return np.concatenate([centre - size / 2, centre + size / 2], axis=-1).astype(np.float32)


def test_encode_hand_computed_shifted_box():
    # Box centre (0.4, 0.35), size (0.2, 0.2): tx = 0, ty = 0.05 / 0.2 / 0.1 = 2.5,
    # tw = log(0.2 / 0.4) / 0.2, th = log(0.2 / 0.2) / 0.2 = 0.
    box = np.array([[0.3, 0.25, 0.5, 0.45]], np.float32)
    out = encode_boxes(box, ANCHOR, VARIANCES).numpy()
    np.testing.assert_allclose(out, [[0.0, 2.5, math.log(0.5) / 0.2, 0.0]], atol=1e-5)


def test_encode_hand_computed_grown_box():
    # Box centre (0.5, 0.3), size (0.8, 0.4): tx = 0.1 / 0.4 / 0.1 = 2.5, ty = 0,
    # tw = th = log(2) / 0.2.
    box = np.array([[0.1, 0.1, 0.9, 0.5]], np.float32)
    out = encode_boxes(box, ANCHOR, VARIANCES).numpy()
    expected = [[2.5, 0.0, math.log(2.0) / 0.2, math.log(2.0) / 0.2]]
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_decode_hand_computed():
    # cx = 0.4 + 1 * 0.1 * 0.4 = 0.44, cy = 0.3 - 1 * 0.1 * 0.2 = 0.28,
    # w = 0.4 * exp(0.5 * 0.2), h = 0.2 * exp(0) = 0.2.
    deltas = np.array([[1.0, -1.0, 0.5, 0.0]], np.float32)
    half_w = 0.4 * math.exp(0.1) / 2
    expected = [[0.44 - half_w, 0.18, 0.44 + half_w, 0.38]]
    np.testing.assert_allclose(decode_boxes(deltas, ANCHOR, VARIANCES).numpy(), expected, atol=1e-6)


def test_encode_equals_torchvision_weights_formula():
    # torchvision BoxCoder weights (10, 10, 5, 5) = 1 / variances: tx = 10 * dx / aw, ...
    rng = np.random.default_rng(3)
    boxes, anchors = _random_boxes(rng, (50,)), _random_boxes(rng, (50,))
    bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    dx = (boxes[:, 0] + bw / 2) - (anchors[:, 0] + aw / 2)
    dy = (boxes[:, 1] + bh / 2) - (anchors[:, 1] + ah / 2)
    expected = np.stack([10 * dx / aw, 10 * dy / ah, 5 * np.log(bw / aw), 5 * np.log(bh / ah)], 1)
    np.testing.assert_allclose(encode_boxes(boxes, anchors, VARIANCES).numpy(), expected, atol=1e-4)


def test_decode_inverts_encode():
    rng = np.random.default_rng(4)
    boxes, anchors = _random_boxes(rng, (200,)), _random_boxes(rng, (200,))
    out = decode_boxes(encode_boxes(boxes, anchors, VARIANCES), anchors, VARIANCES).numpy()
    np.testing.assert_allclose(out, boxes, atol=1e-5)


def test_encode_inverts_decode():
    rng = np.random.default_rng(5)
    anchors = _random_boxes(rng, (200,))
    deltas = rng.normal(0.0, 1.5, size=(200, 4)).astype(np.float32)
    out = encode_boxes(decode_boxes(deltas, anchors, VARIANCES), anchors, VARIANCES).numpy()
    np.testing.assert_allclose(out, deltas, atol=1e-4)


def test_batched_deltas_broadcast_over_anchors():
    rng = np.random.default_rng(6)
    anchors = _random_boxes(rng, (30,))
    boxes = _random_boxes(rng, (3, 30))
    batched = encode_boxes(boxes, anchors, VARIANCES).numpy()
    assert batched.shape == (3, 30, 4)
    for image in range(3):
        single = encode_boxes(boxes[image], anchors, VARIANCES).numpy()
        np.testing.assert_allclose(batched[image], single, atol=1e-6)


def test_encode_of_zero_size_box_is_finite():
    padding = np.zeros((1, 4), np.float32)
    assert np.all(np.isfinite(encode_boxes(padding, ANCHOR, VARIANCES).numpy()))


def test_decode_of_huge_delta_is_finite():
    deltas = np.array([[0.0, 0.0, 1e4, 1e4]], np.float32)
    out = decode_boxes(deltas, ANCHOR, VARIANCES).numpy()
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out[0, 2] - out[0, 0], 0.4 * 62.5, rtol=1e-5)


def test_rejects_non_positive_variance():
    with pytest.raises(ValueError, match="variances must be 4 positive values"):
        encode_boxes(ANCHOR, ANCHOR, (0.1, 0.1, 0.0, 0.2))


def test_rejects_boxes_without_four_coordinates():
    with pytest.raises(ValueError, match=r"deltas must have shape \(\.\.\., N, 4\)"):
        decode_boxes(np.zeros((2, 3), np.float32), ANCHOR, VARIANCES)


def test_float16_and_float64_inputs_give_float32_boxes():
    deltas = np.array([[1.0, -1.0, 0.5, 0.0]], np.float16)
    out = decode_boxes(deltas, ANCHOR.astype(np.float64), VARIANCES)
    assert out.dtype == np.float32
    half_w = 0.4 * math.exp(0.1) / 2
    np.testing.assert_allclose(out.numpy(), [[0.44 - half_w, 0.18, 0.44 + half_w, 0.38]], atol=1e-6)


def test_decode_boxes_numpy_equals_tf_within_an_ulp_of_exp():
    rng = np.random.default_rng(4)
    anchors = _random_boxes(rng, (50,))
    deltas = rng.normal(0.0, 2.0, size=(3, 50, 4)).astype(np.float32)
    deltas[0, 0] = [0.0, 0.0, 1e4, -1e4]  # the size cap
    out = decode_boxes_numpy(deltas, anchors, VARIANCES)
    assert out.dtype == np.float32 and out.shape == (3, 50, 4)
    np.testing.assert_allclose(out, decode_boxes(deltas, anchors, VARIANCES).numpy(), atol=1e-6)


def test_decode_boxes_numpy_hand_computed():
    deltas = np.array([[1.0, -1.0, 0.5, 0.0]], np.float16)
    half_w = 0.4 * math.exp(0.1) / 2
    np.testing.assert_allclose(
        decode_boxes_numpy(deltas, ANCHOR, VARIANCES),
        [[0.44 - half_w, 0.18, 0.44 + half_w, 0.38]],
        atol=1e-6,
    )


def test_decode_boxes_numpy_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"deltas must have shape \(\.\.\., 4\)"):
        decode_boxes_numpy(np.zeros((2, 3), np.float32), ANCHOR, VARIANCES)
    with pytest.raises(ValueError, match="variances must be 4 positive values"):
        decode_boxes_numpy(np.zeros((1, 4), np.float32), ANCHOR, (0.1, 0.1, -0.2, 0.2))
