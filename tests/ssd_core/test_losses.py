"""SSDLoss on hand-computed cases, hard negative mining, and numerical edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from ssd_core.losses import SSDLoss, hard_negative_mask, smooth_l1


def log_softmax_loss(logits: list[float], label: int) -> float:
    """Reference cross-entropy: log(sum(exp(z))) - z[label]."""
    return math.log(sum(math.exp(z) for z in logits)) - logits[label]


def one_positive_case() -> tuple[np.ndarray, ...]:
    """One image, 5 anchors, 3 classes: anchor 0 positive (class 2), anchors 1..4 background."""
    cls_targets = np.array([[2, 0, 0, 0, 0]], np.int32)
    logits = np.array(
        [[[1.0, 2.0, 3.0], [2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 4.0]]],
        np.float32,
    )
    box_targets = np.zeros((1, 5, 4), np.float32)
    box_targets[0, 0] = [0.1, -0.2, 0.3, 0.0]
    regression = np.zeros((1, 5, 4), np.float32)
    regression[0, 0] = [0.6, -2.2, 0.3, 0.2]  # diffs 0.5, -2.0, 0.0, 0.2
    regression[0, 1:] = 5.0  # ignored: not positives
    return cls_targets, box_targets, logits, regression


def test_smooth_l1_matches_caffe_formula() -> None:
    value = smooth_l1(tf.constant([[0.5, -2.0, 0.0, 1.0]]), tf.zeros((1, 4))).numpy()
    np.testing.assert_allclose(value, [0.125 + 1.5 + 0.0 + 0.5], atol=1e-7)


def test_loss_value_on_one_positive_is_hand_computed() -> None:
    cls_targets, box_targets, logits, regression = one_positive_case()
    out = SSDLoss()(cls_targets, box_targets, logits, regression)
    loc = 0.5 * 0.5**2 + (2.0 - 0.5) + 0.0 + 0.5 * 0.2**2
    # 1 positive -> 3 negatives: background losses of anchors 1..4 are
    # lse(2,0,0)-2, lse(0,3,0)-0, lse(1,1,1)-1, lse(0,0,4)-0; the three highest are 2, 3, 4.
    negatives = [log_softmax_loss(logits[0, i].tolist(), 0) for i in (2, 3, 4)]
    conf = log_softmax_loss(logits[0, 0].tolist(), 2) + sum(negatives)
    np.testing.assert_allclose(out["loc_loss"].numpy(), loc, atol=1e-5)
    np.testing.assert_allclose(out["conf_loss"].numpy(), conf, atol=1e-5)
    np.testing.assert_allclose(out["loss"].numpy(), loc + conf, atol=1e-5)


def test_loss_is_normalised_by_positives_of_the_whole_batch() -> None:
    cls_targets, box_targets, logits, regression = one_positive_case()
    single = SSDLoss()(cls_targets, box_targets, logits, regression)["loss"].numpy()
    batch = SSDLoss()(
        np.repeat(cls_targets, 2, 0),
        np.repeat(box_targets, 2, 0),
        np.repeat(logits, 2, 0),
        np.repeat(regression, 2, 0),
    )["loss"].numpy()
    np.testing.assert_allclose(batch, single, rtol=1e-6)  # twice the sum over twice the positives


def test_mined_negatives_are_the_highest_loss_ones() -> None:
    loss = tf.constant([[0.5, 3.0, 0.1, 2.0, 9.0, 1.0]])
    negatives = tf.constant([[True, True, True, True, False, True]])  # 9.0 is not a candidate
    mask = hard_negative_mask(loss, negatives, tf.constant([2])).numpy()
    np.testing.assert_array_equal(mask, [[False, True, False, True, False, False]])


def test_number_of_mined_negatives_is_capped_by_available() -> None:
    """Two positives want 6 negatives, only 2 background anchors exist: both, nothing more."""
    cls_targets = np.array([[1, 1, 0, 0, -1]], np.int32)
    logits = np.zeros((1, 5, 2), np.float32)
    zeros = np.zeros((1, 5, 4), np.float32)
    out = SSDLoss()(cls_targets, zeros, logits, zeros)
    # every anchor has CE log 2; counted: 2 positives + 2 negatives, ignore anchor excluded
    np.testing.assert_allclose(out["conf_loss"].numpy(), 4 * math.log(2.0) / 2, atol=1e-6)


def test_number_of_mined_negatives_is_three_per_positive() -> None:
    cls_targets = np.array([[1] + [0] * 9], np.int32)
    logits = np.zeros((1, 10, 2), np.float32)
    zeros = np.zeros((1, 10, 4), np.float32)
    out = SSDLoss()(cls_targets, zeros, logits, zeros)
    np.testing.assert_allclose(out["conf_loss"].numpy(), 4 * math.log(2.0), atol=1e-6)


def test_ignored_anchors_do_not_contribute() -> None:
    cls_targets, box_targets, logits, regression = one_positive_case()
    base = SSDLoss()(cls_targets, box_targets, logits, regression)["loss"].numpy()
    extra_targets = np.concatenate([cls_targets, [[-1]]], axis=1)
    extra_logits = np.concatenate([logits, [[[0.0, 50.0, 0.0]]]], axis=1)
    extra_boxes = np.concatenate([box_targets, np.full((1, 1, 4), 1e6, np.float32)], axis=1)
    extra_reg = np.concatenate([regression, np.zeros((1, 1, 4), np.float32)], axis=1)
    out = SSDLoss()(extra_targets, extra_boxes, extra_logits, extra_reg)["loss"].numpy()
    np.testing.assert_allclose(out, base, atol=1e-6)


def test_all_background_batch_gives_zero_loss_without_nan() -> None:
    cls_targets = np.zeros((2, 6), np.int32)
    logits = np.random.default_rng(0).normal(size=(2, 6, 3)).astype(np.float32)
    out = SSDLoss()(cls_targets, np.zeros((2, 6, 4)), logits, np.ones((2, 6, 4)))
    assert out["loss"].numpy() == 0.0


def test_min_negatives_mines_background_only_images() -> None:
    cls_targets = np.zeros((1, 4), np.int32)
    logits = np.array([[[0.0, 1.0], [0.0, 3.0], [0.0, 2.0], [0.0, 0.0]]], np.float32)
    out = SSDLoss(min_negatives=2)(cls_targets, np.zeros((1, 4, 4)), logits, np.zeros((1, 4, 4)))
    expected = log_softmax_loss([0.0, 3.0], 0) + log_softmax_loss([0.0, 2.0], 0)
    np.testing.assert_allclose(out["conf_loss"].numpy(), expected, atol=1e-5)


def test_gradients_are_finite_for_extreme_logits() -> None:
    cls_targets = tf.constant([[1, 0, 0, 0], [0, 0, 0, 0]], tf.int32)
    logits = tf.Variable(
        np.array([[[-1e4, 1e4], [1e4, -1e4], [-1e4, 1e4], [0, 0]]] * 2, np.float32)
    )
    regression = tf.Variable(np.full((2, 4, 4), 1e3, np.float32))
    with tf.GradientTape() as tape:
        loss = SSDLoss()(cls_targets, tf.zeros((2, 4, 4)), logits, regression)["loss"]
    grads = tape.gradient(loss, [logits, regression])
    assert np.isfinite(loss.numpy())
    for grad in grads:
        assert np.all(np.isfinite(grad.numpy()))


def test_loss_rejects_negative_ratio() -> None:
    with pytest.raises(ValueError, match="must be >= 0"):
        SSDLoss(neg_pos_ratio=-1.0)
