"""Tests for ssd_core.postprocess_numpy against the TF reference, `decode_detections`, run
eagerly on the same inputs: labels and counts equal, scores and boxes within 1e-6."""

import itertools

import numpy as np
import pytest

from ssd_core import DecoderConfig
from ssd_core.box_ops import pairwise_iou_numpy
from ssd_core.postprocess import SMALL_TOP_K, decode_detections
from ssd_core.postprocess_numpy import (
    decode_detections_numpy,
    foreground_scores,
    greedy_nms_numpy,
    most_candidates,
)
from tests.ssd_core.engines.parity import assert_identical_outputs

VARIANCES = (0.1, 0.1, 0.2, 0.2)
NUM_CLUSTERS, PER_CLUSTER, NUM_CLASSES = 40, 5, 4
TOLERANCE = 1e-6


def _clustered_anchors(rng: np.random.Generator) -> np.ndarray:
    """(NUM_CLUSTERS * PER_CLUSTER, 4) anchors, jittered copies of a few boxes, so that
    neighbours overlap at IoUs around the NMS threshold; some reach past the image."""
    centre = rng.uniform(0.0, 1.0, size=(NUM_CLUSTERS, 1, 2))
    size = rng.uniform(0.05, 0.5, size=(NUM_CLUSTERS, 1, 2))
    centre = centre + rng.normal(0.0, 0.15, size=(NUM_CLUSTERS, PER_CLUSTER, 2)) * size
    anchors = np.concatenate([centre - size / 2, centre + size / 2], axis=-1)
    return anchors.reshape(-1, 4).astype(np.float32)


def _sparse_inputs(seed: int, batch: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits where most anchors are background and a few score high on a foreground class
    (a trained detector's outputs), deltas, anchors."""
    rng = np.random.default_rng(seed)
    anchors = _clustered_anchors(rng)
    num_anchors = len(anchors)
    logits = rng.normal(0.0, 1.0, size=(batch, num_anchors, NUM_CLASSES))
    logits[..., 0] += 4.0
    objects = rng.random((batch, num_anchors)) < 0.1
    classes = rng.integers(1, NUM_CLASSES, size=(batch, num_anchors))
    logits[objects, classes[objects]] += rng.uniform(2.0, 6.0, size=objects.sum())
    deltas = rng.normal(0.0, 0.5, size=(batch, num_anchors, 4))
    return logits.astype(np.float32), deltas.astype(np.float32), anchors


def _both(logits, deltas, anchors, config, threshold=None, count=None):
    """(TF reference, NumPy) outputs as NumPy arrays."""
    reference = decode_detections(
        logits, deltas, anchors, VARIANCES, config, score_threshold=threshold, max_detections=count
    )
    outputs = decode_detections_numpy(
        logits, deltas, anchors, VARIANCES, config, score_threshold=threshold, max_detections=count
    )
    return {key: value.numpy() for key, value in reference.items()}, outputs


@pytest.mark.parametrize(
    ("method", "clip", "threshold"),
    list(itertools.product(["caffe", "fast"], [True, False], [0.3, 0.5, 0.9])),
)
def test_matches_decode_detections_where_the_shortcut_applies(method, clip, threshold):
    config = DecoderConfig(method=method, clip=clip, max_detections=30)
    for seed in range(8):
        logits, deltas, anchors = _sparse_inputs(seed)
        scores = foreground_scores(logits)
        assert 0 < most_candidates(scores, threshold, method) <= SMALL_TOP_K
        assert_identical_outputs(*_both(logits, deltas, anchors, config, threshold), TOLERANCE)


@pytest.mark.parametrize("method", ["caffe", "fast"])
def test_matches_decode_detections_with_many_candidates(method):
    # Exact at any count (only slower): hundreds above 0.01, top_k cutting each group.
    config = DecoderConfig(method=method, top_k=50, max_detections=100)
    for seed in range(3):
        logits, deltas, anchors = _sparse_inputs(seed, batch=2)
        assert most_candidates(foreground_scores(logits), 0.01, method) > 50
        assert_identical_outputs(*_both(logits, deltas, anchors, config), TOLERANCE)


@pytest.mark.parametrize("method", ["caffe", "fast"])
def test_per_call_count_below_k_keeps_the_best_and_zeroes_the_rest(method):
    config = DecoderConfig(method=method, max_detections=10)
    logits, deltas, anchors = _sparse_inputs(5)
    reference, outputs = _both(logits, deltas, anchors, config, 0.3, 3)
    assert outputs["num_detections"].tolist() == [3, 3, 3]
    assert not outputs["scores"][:, 3:].any() and not outputs["boxes"][:, 3:].any()
    assert_identical_outputs(reference, outputs, TOLERANCE)


@pytest.mark.parametrize("method", ["caffe", "fast"])
def test_config_k_below_the_kept_count_keeps_the_best_k(method):
    config = DecoderConfig(method=method, max_detections=4)
    logits, deltas, anchors = _sparse_inputs(6)
    reference, outputs = _both(logits, deltas, anchors, config, 0.3)
    assert outputs["boxes"].shape == (3, 4, 4)
    assert outputs["num_detections"].tolist() == [4, 4, 4]
    assert_identical_outputs(reference, outputs, TOLERANCE)


@pytest.mark.parametrize("method", ["caffe", "fast"])
def test_top_k_below_the_candidate_count_cuts_each_group(method):
    config = DecoderConfig(method=method, top_k=3)
    logits, deltas, anchors = _sparse_inputs(7)
    assert_identical_outputs(*_both(logits, deltas, anchors, config, 0.3), TOLERANCE)


@pytest.mark.parametrize("method", ["caffe", "fast"])
def test_equal_scores_rank_lower_anchor_then_lower_class(method):
    # Anchors 0..5 get the same logits on classes 1 and 2: equal scores on different anchors
    # and classes. Far-apart boxes, so NMS keeps all and the order is the tie rule's alone.
    anchors = np.array([[0.1 * i, 0.0, 0.1 * i + 0.05, 0.05] for i in range(8)], np.float32)
    logits = np.array([[[5.0, 0.0, 0.0]] * 8], np.float32)  # background
    logits[0, :6] = [0.0, 2.0, 2.0]
    logits[0, 6] = [0.0, 0.0, 3.0]  # one higher score, on anchor 6 class 2, ranks first
    deltas = np.zeros((1, 8, 4), np.float32)
    config = DecoderConfig(method=method, max_detections=20)
    reference, outputs = _both(logits, deltas, anchors, config, 0.3)
    assert_identical_outputs(reference, outputs, TOLERANCE)
    n = outputs["num_detections"][0]
    anchor_of_row = [int(np.argmin(np.abs(anchors[:, 0] - x))) for x in outputs["boxes"][0, :n, 0]]
    if method == "caffe":
        expected = [(6, 2)] + [(a, c) for a in range(6) for c in (1, 2)]
    else:
        expected = [(6, 2)] + [(a, 1) for a in range(6)]
    assert list(zip(anchor_of_row, outputs["labels"][0, :n].tolist(), strict=True)) == expected


@pytest.mark.parametrize("method", ["caffe", "fast"])
def test_tied_overlapping_boxes_keep_the_lower_anchor(method):
    anchors = np.array([[0.3, 0.3, 0.6, 0.6], [0.31, 0.3, 0.61, 0.6]], np.float32)
    logits = np.array([[[0.0, 2.0], [0.0, 2.0]]], np.float32)
    reference, outputs = _both(
        logits, np.zeros((1, 2, 4), np.float32), anchors, DecoderConfig(method=method)
    )
    assert_identical_outputs(reference, outputs, TOLERANCE)
    assert outputs["num_detections"][0] == 1
    np.testing.assert_allclose(outputs["boxes"][0, 0], anchors[0], atol=TOLERANCE)


def _square_pair(iou: float, side: float = 0.4) -> np.ndarray:
    """Two squares of `side` shifted sideways so that their IoU, (side - d) / (side + d), is
    `iou`."""
    shift = side * (1.0 - iou) / (1.0 + iou)
    return np.array(
        [[0.1, 0.1, 0.1 + side, 0.1 + side], [0.1 + shift, 0.1, 0.1 + shift + side, 0.1 + side]]
    )


@pytest.mark.parametrize("method", ["caffe", "fast"])
def test_iou_just_above_the_threshold_suppresses_and_just_below_keeps(method):
    # Pairs at IoU 0.45 -/+ 1e-4 and 1e-5 around iou_threshold 0.45, in separate images.
    offsets = (-1e-4, 1e-4, -1e-5, 1e-5)
    anchors = np.concatenate([_square_pair(0.45 + d) for d in offsets]).astype(np.float32)
    logits = np.zeros((len(offsets), len(anchors), 2), np.float32)
    logits[..., 0] = 5.0  # background, but for each image's own pair
    for image in range(len(offsets)):
        logits[image, 2 * image : 2 * image + 2] = [[0.0, 3.0], [0.0, 2.5]]
    deltas = np.zeros((len(offsets), len(anchors), 4), np.float32)
    reference, outputs = _both(logits, deltas, anchors, DecoderConfig(method=method))
    assert_identical_outputs(reference, outputs, TOLERANCE)
    assert outputs["num_detections"].tolist() == [2, 1, 2, 1]


def test_nothing_above_the_threshold_gives_zero_padded_outputs():
    logits, deltas, anchors = _sparse_inputs(8)
    logits[..., 0] += 100.0
    reference, outputs = _both(logits, deltas, anchors, DecoderConfig(max_detections=7), 0.3)
    assert_identical_outputs(reference, outputs, TOLERANCE)
    assert not outputs["num_detections"].any() and not outputs["boxes"].any()


def test_greedy_nms_numpy_suppressed_box_does_not_suppress():
    # 0 suppresses 1 (IoU 0.6), 1 would suppress 2 (IoU 0.6) but is gone; 0 and 2 barely touch.
    boxes = np.array([[[0.0, 0.0, 1.0, 1.0], [0.25, 0.0, 1.25, 1.0], [0.5, 0.0, 1.5, 1.0]]])
    keep = greedy_nms_numpy(boxes.astype(np.float32), np.ones((1, 3), bool), 0.5)
    assert keep.tolist() == [[True, False, True]]


def test_softmax_is_stable_for_huge_logits():
    scores = foreground_scores(np.array([[[1000.0, 1000.0, -1000.0]]], np.float32))
    np.testing.assert_allclose(scores, [[[0.5]], [[0.0]]])  # class-major (C-1, B, N)


def test_rejects_inputs_of_the_wrong_shape():
    logits = np.zeros((1, 5, 3), np.float32)
    anchors = np.zeros((5, 4), np.float32)
    with pytest.raises(ValueError, match=r"bbox_regression must have shape \(1, 5, 4\)"):
        decode_detections_numpy(logits, np.zeros((1, 4, 4), np.float32), anchors)
    with pytest.raises(ValueError, match=r"anchors must have shape \(5, 4\)"):
        decode_detections_numpy(logits, np.zeros((1, 5, 4), np.float32), anchors[:4])
    with pytest.raises(ValueError, match=r"cls_logits must have shape \(B, N, C >= 2\)"):
        decode_detections_numpy(logits[..., :1], np.zeros((1, 5, 4), np.float32), anchors)


def test_iou_equal_to_the_threshold_keeps_both():
    pair = _square_pair(0.45).astype(np.float32)
    iou = float(pairwise_iou_numpy(pair, pair)[0, 1])  # exactly, as both decoders compute it
    logits = np.array([[[0.0, 3.0], [0.0, 2.5]]], np.float32)
    config = DecoderConfig(iou_threshold=iou)
    reference, outputs = _both(logits, np.zeros((1, 2, 4), np.float32), pair, config)
    assert_identical_outputs(reference, outputs, TOLERANCE)
    assert outputs["num_detections"].tolist() == [2]


def test_score_equal_to_the_threshold_in_float32_is_dropped():
    # Three equal logits score float32(1/3) in NumPy and TF alike. A threshold of 1/3, even a
    # float64 one, is compared in float32, as the TF decoder does (in float64 1/3 is below
    # float32(1/3), which would keep the score).
    logits = np.array([[[0.0, 0.0, 0.0], [0.0, 3.0, 0.0]]], np.float32)
    anchors = np.array([[0.0, 0.0, 0.2, 0.2], [0.5, 0.5, 0.7, 0.7]], np.float32)
    assert foreground_scores(logits)[0, 0, 0] == np.float32(1 / 3)
    assert float(np.float32(1 / 3)) > 1 / 3
    deltas = np.zeros((1, 2, 4), np.float32)
    reference, outputs = _both(logits, deltas, anchors, DecoderConfig(), np.float64(1 / 3))
    assert_identical_outputs(reference, outputs, TOLERANCE)
    assert outputs["num_detections"].tolist() == [1]
