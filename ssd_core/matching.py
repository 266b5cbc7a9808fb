"""Target encoding: match ground-truth boxes to anchors and encode the regression targets.

Caffe `MultiBoxLoss` matching (`match_type: PER_PREDICTION`, `overlap_threshold: 0.5`):

1. Bipartite: greedily, the (box, anchor) pair with the highest IoU among unmatched boxes and
   anchors is matched, until every box has an anchor (boxes overlapping no anchor at all stay
   unmatched). So every box gets its best anchor, even below 0.5.
2. Per prediction: every other anchor whose best IoU with any box is >= `pos_iou` is matched
   to that box.
3. Anchors left over are background, except those whose best IoU is >= `neg_iou_limit` (a
   neutral band below `pos_iou`), which get `IGNORE_LABEL` and are skipped by the loss.
   Caffe's `neg_overlap: 0.5` equals `pos_iou`, i.e. no neutral band; that is the default.

Everything is TensorFlow ops on one image, usable inside `tf.data.Dataset.map`.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from ssd_core.anchors import generate_anchors
from ssd_core.box_coder import encode_boxes
from ssd_core.box_ops import pairwise_iou
from ssd_core.config import SSDConfig
from ssd_core.losses import IGNORE_LABEL


def bipartite_match(iou: tf.Tensor) -> tf.Tensor:
    """Greedy bipartite matching on an IoU matrix.

    Args:
        iou: (M, N) float32 IoU of M boxes with N anchors.

    Returns:
        (N,) int32: for every anchor the index of the box it was matched to, or -1.
    """
    num_boxes = tf.shape(iou)[0]
    num_anchors = tf.shape(iou)[1]

    def step(
        index: tf.Tensor, match: tf.Tensor, box_used: tf.Tensor, anchor_used: tf.Tensor
    ) -> tuple[tf.Tensor, ...]:
        available = tf.where(box_used[:, None] | anchor_used[None, :], -1.0, iou)
        flat = tf.argmax(tf.reshape(available, [-1]), output_type=tf.int32)
        box, anchor = flat // num_anchors, flat % num_anchors
        # Caffe ignores pairs with (near) zero overlap; such a box stays unmatched.
        found = available[box, anchor] > 1e-6
        match = tf.where(found & tf.equal(tf.range(num_anchors), anchor), box, match)
        box_used = box_used | (found & tf.equal(tf.range(num_boxes), box))
        anchor_used = anchor_used | (found & tf.equal(tf.range(num_anchors), anchor))
        return index + 1, match, box_used, anchor_used

    _, match, _, _ = tf.while_loop(
        lambda index, *_: index < num_boxes,
        step,
        (
            tf.constant(0),
            tf.fill([num_anchors], -1),
            tf.zeros([num_boxes], tf.bool),
            tf.zeros([num_anchors], tf.bool),
        ),
    )
    return match


def match_anchors(
    boxes: tf.Tensor,
    labels: tf.Tensor,
    anchors: tf.Tensor,
    variances: Sequence[float],
    pos_iou: float = 0.5,
    neg_iou_limit: float | None = None,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Training targets of one image.

    Args:
        boxes: (M, 4) float32 ground truth, normalised [xmin, ymin, xmax, ymax]; M may be 0.
            Rows whose label is <= 0 are padding and ignored.
        labels: (M,) int32 class labels 1..C-1.
        anchors: (N, 4) float32 anchors, normalised [xmin, ymin, xmax, ymax].
        variances: the config's box-coding variances.
        pos_iou: IoU from which an anchor is positive (inclusive).
        neg_iou_limit: anchors with best IoU in [neg_iou_limit, pos_iou) are ignored by the
            loss; None (default) means `pos_iou`, i.e. no neutral band.

    Returns:
        cls_targets: (N,) int32, 0 background, 1..C-1 matched class, -1 ignore.
        box_targets: (N, 4) float32 encoded deltas of the matched box, zeros elsewhere.
    """
    neg_iou_limit = pos_iou if neg_iou_limit is None else neg_iou_limit
    if not 0.0 < neg_iou_limit <= pos_iou <= 1.0:
        raise ValueError(
            f"need 0 < neg_iou_limit <= pos_iou <= 1, got {neg_iou_limit} and {pos_iou}"
        )
    boxes = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
    labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
    real = labels > 0
    boxes, labels = tf.boolean_mask(boxes, real), tf.boolean_mask(labels, real)
    anchors = tf.cast(anchors, tf.float32)

    iou = pairwise_iou(boxes, anchors)  # (M, N)
    bipartite = bipartite_match(iou)
    # A zero row (a dummy box at index M) keeps the reductions defined when M == 0.
    padded_iou = tf.concat([iou, tf.zeros_like(anchors[None, :, 0])], axis=0)  # (M+1, N)
    best_iou = tf.reduce_max(padded_iou, axis=0)
    best_box = tf.argmax(padded_iou, axis=0, output_type=tf.int32)
    matched_box = tf.where(bipartite >= 0, bipartite, best_box)
    positive = (bipartite >= 0) | (best_iou >= pos_iou)
    ignore = ~positive & (best_iou >= neg_iou_limit)

    padded_labels = tf.concat([labels, [0]], axis=0)
    padded_boxes = tf.concat([boxes, [[0.0, 0.0, 1.0, 1.0]]], axis=0)
    cls_targets = tf.where(positive, tf.gather(padded_labels, matched_box), 0)
    cls_targets = tf.where(ignore, IGNORE_LABEL, cls_targets)
    encoded = encode_boxes(tf.gather(padded_boxes, matched_box), anchors, variances)
    box_targets = tf.where(positive[:, None], encoded, 0.0)
    return cls_targets, box_targets


class TargetEncoder:
    """`match_anchors` bound to a config's anchors and variances.

    Call it on one image's (M, 4) normalised boxes and (M,) labels to get
    `(cls_targets (N,), box_targets (N, 4))`.
    """

    def __init__(
        self, config: SSDConfig, pos_iou: float = 0.5, neg_iou_limit: float | None = None
    ) -> None:
        self.config = config
        self.anchors = tf.constant(generate_anchors(config), tf.float32)
        self.pos_iou = pos_iou
        self.neg_iou_limit = neg_iou_limit

    @property
    def num_anchors(self) -> int:
        return int(self.anchors.shape[0])

    def __call__(self, boxes: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return match_anchors(
            boxes,
            labels,
            self.anchors,
            self.config.variances,
            pos_iou=self.pos_iou,
            neg_iou_limit=self.neg_iou_limit,
        )
