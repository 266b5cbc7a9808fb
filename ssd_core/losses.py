"""`SSDLoss`: the SSD multibox loss (Caffe `MultiBoxLoss` with the `ssd_pascal.py` settings).

    loss = (sum of smooth L1 over positive anchors
            + sum of softmax cross-entropy over positives and mined negatives) / max(P, 1)

where P is the number of positive anchors in the whole batch (Caffe `normalization: VALID`).
Hard negative mining (`MAX_NEGATIVE`) keeps, per image, the `neg_pos_ratio` x (positives of
that image) background anchors with the highest classification loss, or all of them if fewer
are available. Anchors marked "ignore" (label -1, the neutral IoU band of the matcher) never
contribute.
"""

from __future__ import annotations

import tensorflow as tf

IGNORE_LABEL = -1  # class target of anchors the loss skips (see ssd_core.matching)


def smooth_l1(predictions: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
    """Caffe's SmoothL1 (sigma 1, i.e. Huber with delta 1), summed over the last axis.

    (..., 4), (..., 4) -> (...): 0.5 x^2 where |x| < 1, |x| - 0.5 elsewhere.
    """
    diff = tf.abs(predictions - targets)
    return tf.reduce_sum(tf.where(diff < 1.0, 0.5 * diff**2, diff - 0.5), axis=-1)


def hard_negative_mask(
    negative_loss: tf.Tensor, negatives: tf.Tensor, num_negatives: tf.Tensor
) -> tf.Tensor:
    """Per image, the `num_negatives` candidate negatives with the highest loss.

    Args:
        negative_loss: (B, N) float32, classification loss of every anchor as background.
        negatives: (B, N) bool, anchors that may be mined (background, not ignored).
        num_negatives: (B,) int32, how many to keep per image (<= candidates).

    Returns:
        (B, N) bool mask of the mined negatives.
    """
    ranked_loss = tf.where(negatives, negative_loss, -float("inf"))
    order = tf.argsort(ranked_loss, axis=-1, direction="DESCENDING", stable=True)
    rank = tf.argsort(order, axis=-1, stable=True)  # rank of every anchor in that order
    return negatives & (rank < num_negatives[:, None])


class SSDLoss:
    """The multibox loss, a plain callable used by the custom train step.

    Args:
        neg_pos_ratio: mined negatives per positive (3 in SSD).
        min_negatives: negatives mined per image even without positives (0 in Caffe, which
            makes a background-only image contribute nothing; ssd_keras' `n_neg_min` is the
            same idea).
        loc_weight: weight of the localisation term (`alpha`, 1 in SSD).
    """

    def __init__(
        self, neg_pos_ratio: float = 3.0, min_negatives: int = 0, loc_weight: float = 1.0
    ) -> None:
        if neg_pos_ratio < 0 or min_negatives < 0 or loc_weight < 0:
            raise ValueError(
                "neg_pos_ratio, min_negatives and loc_weight must be >= 0, got "
                f"{neg_pos_ratio}, {min_negatives}, {loc_weight}"
            )
        self.neg_pos_ratio = neg_pos_ratio
        self.min_negatives = min_negatives
        self.loc_weight = loc_weight

    def __call__(
        self,
        cls_targets: tf.Tensor,
        box_targets: tf.Tensor,
        cls_logits: tf.Tensor,
        bbox_regression: tf.Tensor,
        num_positives: tf.Tensor | None = None,
    ) -> dict[str, tf.Tensor]:
        """The loss of one batch.

        Args:
            cls_targets: (B, N) int32: 0 background, 1..C-1 object class, -1 ignore.
            box_targets: (B, N, 4) float32 encoded regression targets (read at positives only).
            cls_logits: (B, N, C) class logits (any float dtype; computed in float32).
            bbox_regression: (B, N, 4) predicted regression deltas.
            num_positives: P, the positives the sums are divided by; default: this batch's.
                Replicas of one distributed step pass the global batch's count, so their
                losses add up to the loss of the whole batch.

        Returns:
            {"loss", "loc_loss", "conf_loss"}: float32 scalars, each divided by max(P, 1);
            `loss = loc_weight * loc_loss + conf_loss`.
        """
        cls_targets = tf.cast(cls_targets, tf.int32)
        cls_logits = tf.cast(cls_logits, tf.float32)
        bbox_regression = tf.cast(bbox_regression, tf.float32)
        box_targets = tf.cast(box_targets, tf.float32)

        positives = cls_targets > 0
        candidates = tf.equal(cls_targets, 0)
        cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.maximum(cls_targets, 0), logits=cls_logits
        )  # (B, N); equals the background loss on candidates, as Caffe ranks them

        num_pos = tf.reduce_sum(tf.cast(positives, tf.int32), axis=-1)  # (B,)
        wanted = tf.cast(tf.cast(num_pos, tf.float32) * self.neg_pos_ratio, tf.int32)
        wanted = tf.maximum(wanted, self.min_negatives)
        available = tf.reduce_sum(tf.cast(candidates, tf.int32), axis=-1)
        mined = hard_negative_mask(
            tf.stop_gradient(cross_entropy), candidates, tf.minimum(wanted, available)
        )

        if num_positives is None:
            num_positives = tf.reduce_sum(num_pos)
        normaliser = tf.maximum(tf.cast(num_positives, tf.float32), 1.0)
        # tf.where, not a 0/1 product: targets of non-positive anchors may be huge.
        loc_loss = tf.reduce_sum(tf.where(positives, smooth_l1(bbox_regression, box_targets), 0.0))
        conf_loss = tf.reduce_sum(tf.where(positives | mined, cross_entropy, 0.0))
        loc_loss, conf_loss = loc_loss / normaliser, conf_loss / normaliser
        return {
            "loss": self.loc_weight * loc_loss + conf_loss,
            "loc_loss": loc_loss,
            "conf_loss": conf_loss,
        }
