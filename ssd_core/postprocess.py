"""Batched, in-graph decoding of raw SSD outputs into fixed-size padded detections.

Two methods:

- `"caffe"`: Caffe `DetectionOutput` semantics. Softmax over classes; for every foreground
  class independently keep the scores above `score_threshold` (the rule of
  `ssd_core.decoder_config`), take the `top_k` best, run greedy
  NMS (a box is suppressed by a kept, higher-ranked box when their IoU is `> iou_threshold`);
  then keep the `max_detections` best detections of the image over all classes.
- `"fast"`: class-agnostic. Every anchor votes once with its best foreground class; threshold,
  `top_k`, one greedy NMS over all classes together, keep `max_detections`. Cheaper (one NMS
  instead of C - 1) but a box can suppress an overlapping box of another class.

Deviations from Caffe, all deliberate:

- `clip=True` (default) clips decoded boxes to [0, 1] before NMS, so the reported boxes lie
  inside the image and NMS compares the boxes we report. Caffe's `DetectionOutput` does not
  clip; `clip=False` reproduces it.
- Output is sorted by descending score over all classes (Caffe emits class by class).
- Ties are broken deterministically (Caffe's final `std::sort` is not stable): between equal
  scores the lower anchor index ranks first, then the lower class label. This holds for the
  per-class `top_k`, the NMS order and the final selection.

All shapes are fixed (K = `max_detections`), so the decoder works inside `tf.function`, a
serving signature and under XLA. NMS is exact greedy NMS, vectorised over images and classes
(`greedy_nms`): candidates are decided in tiles of ranks, each tile by a short fixed-point
iteration, with no Python loop over the batch.

Per-call limits: `decode_detections(..., score_threshold=t, max_detections=k)` takes a stricter
threshold and a smaller count than the config's as tensors (a server passes the lowest
threshold and the largest count of a batch's requests, one compiled graph for all), and the
cost follows the threshold: when no image and class has more than `SMALL_TOP_K` candidates
above it, the candidates are the best `SMALL_TOP_K` instead of the best `top_k` (a cheaper
top-k, one NMS tile, a smaller final selection). That shortcut is exact: every candidate above
the threshold is among them, in the same order, and the others take no part in NMS.

`ssd_core.postprocess_numpy` is this decoder in NumPy, for raw outputs already on the host;
`ssd_core.engines.network.HostDecoder` runs it under the same few-candidates condition.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ssd_core import fields
from ssd_core.anchors import generate_anchors
from ssd_core.box_coder import decode_boxes
from ssd_core.box_ops import clip_boxes, pairwise_iou
from ssd_core.config import SSDConfig
from ssd_core.decoder_config import DecoderConfig, passes_score_threshold

# Candidates per class ("caffe") or per image ("fast") of the shortcut of the module docstring:
# one NMS tile; also the most that `HostDecoder` decodes in NumPy. At the service's 0.3 the
# shipped models have at most 18 (shapes, 64 scenes) and 14 (face, the test photos) anchors per
# class above it.
SMALL_TOP_K = 32


def greedy_nms(
    boxes: tf.Tensor, valid: tf.Tensor, iou_threshold: float, tile_size: int = 32
) -> tf.Tensor:
    """Greedy non-maximum suppression over many independent groups at once.

    Args:
        boxes: (G, K, 4) float32 `[xmin, ymin, xmax, ymax]`, each group sorted by descending
            score; K must be static.
        valid: (G, K) bool, the candidates that take part (invalid ones are never kept and never
            suppress anything).
        iou_threshold: a box is suppressed by a kept box ranked before it when their IoU is
            strictly greater than this (Caffe `ApplyNMSFast`).
        tile_size: candidates decided together; bounds memory at (G, tile_size, K) IoUs.

    Returns:
        (G, K) bool, the kept candidates: exactly the result of sequential greedy NMS.
    """
    num = boxes.shape[1]
    if num is None:
        raise ValueError(f"greedy_nms needs a static number of candidates, got {boxes.shape}")
    valid = tf.convert_to_tensor(valid)
    # Tiles past the last valid candidate of every group decide nothing; skip them at run time.
    active = tf.reduce_max(tf.where(valid, tf.range(1, num + 1)[None, :], 0))
    keep_tiles: list[tf.Tensor] = []
    for start in range(0, num, tile_size):
        stop = min(start + tile_size, num)
        keep_prefix = tf.concat(keep_tiles, axis=1) if keep_tiles else None
        tile_keep = tf.cond(
            start < active,
            lambda start=start, stop=stop, prefix=keep_prefix: _nms_tile(
                boxes, valid, prefix, start, stop, iou_threshold
            ),
            lambda start=start, stop=stop: tf.zeros_like(valid[:, start:stop]),
        )
        keep_tiles.append(tile_keep)
    return tf.concat(keep_tiles, axis=1)


def _nms_tile(
    boxes: tf.Tensor,
    valid: tf.Tensor,
    keep_prefix: tf.Tensor | None,
    start: int,
    stop: int,
    iou_threshold: float,
) -> tf.Tensor:
    """Keep mask (G, stop - start) of candidates start..stop, given the decided ones before."""
    tile = boxes[:, start:stop, :]  # (G, T, 4)
    keep = valid[:, start:stop]
    if keep_prefix is not None:
        # (G, T, start): suppressed by any kept box of an earlier tile.
        cross = pairwise_iou(tile, boxes[:, :start, :]) > iou_threshold
        keep &= ~tf.reduce_any(cross & keep_prefix[:, None, :], axis=2)
    size = stop - start
    earlier = tf.constant(np.triu(np.ones((size, size), bool), k=1))  # [j, i]: j ranked before i
    # (G, T, T) 1.0 where box j (row) would suppress box i (column) if j is kept.
    suppresses = tf.cast((pairwise_iou(tile, tile) > iou_threshold) & earlier, tf.float32)
    candidates = keep

    # Fixed-point iteration: a box is kept iff no kept earlier box suppresses it. Each pass
    # settles at least one more box in rank order, and the greedy result is the unique fixed
    # point, so stopping at the first unchanged pass is exact.
    def step(keep: tf.Tensor, _: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        hits = tf.einsum("gj,gji->gi", tf.cast(keep, tf.float32), suppresses)
        new_keep = candidates & (hits == 0.0)
        return new_keep, tf.reduce_any(new_keep != keep)

    keep, _ = tf.while_loop(
        lambda _, changed: changed,
        step,
        (candidates, tf.constant(True)),
        maximum_iterations=size + 1,
    )
    return keep


def _caffe_candidates(
    boxes: tf.Tensor,
    scores: tf.Tensor,
    score_threshold: tf.Tensor,
    iou_threshold: float,
    top_k: int,
) -> dict[str, tf.Tensor]:
    """Per-class top-k and NMS. boxes (B, N, 4), scores (B, N, C-1) -> candidates (B, M)."""
    batch, num_fg = tf.shape(scores)[0], tf.shape(scores)[2]
    per_class = tf.transpose(scores, [0, 2, 1])  # (B, C-1, N)
    k = min(top_k, scores.shape[1])
    # top_k ranks equal scores by lower index first, i.e. lower anchor index.
    top_scores, anchor_index = tf.math.top_k(per_class, k=k)  # (B, C-1, k)
    top_boxes = tf.gather(boxes, anchor_index, batch_dims=1)  # (B, C-1, k, 4)
    valid = passes_score_threshold(top_scores, score_threshold)
    keep = greedy_nms(tf.reshape(top_boxes, [-1, k, 4]), tf.reshape(valid, [-1, k]), iou_threshold)
    labels = tf.broadcast_to(tf.range(1, num_fg + 1)[None, :, None], tf.shape(anchor_index))
    # The static candidate count keeps M known when the batch size is not (a saved model's
    # signature), which `_select_detections` needs.
    m = scores.shape[2] * k if scores.shape[2] is not None else -1
    return {
        fields.BOXES: tf.reshape(top_boxes, [batch, m, 4]),
        fields.SCORES: tf.reshape(top_scores, [batch, m]),
        fields.LABELS: tf.reshape(labels, [batch, m]),
        "anchor_index": tf.reshape(anchor_index, [batch, m]),
        "keep": tf.reshape(keep, [batch, m]),
    }


def _fast_candidates(
    boxes: tf.Tensor,
    scores: tf.Tensor,
    score_threshold: tf.Tensor,
    iou_threshold: float,
    top_k: int,
) -> dict[str, tf.Tensor]:
    """Best class per anchor, top-k, one NMS. boxes (B, N, 4), scores (B, N, C-1) -> (B, k)."""
    best = tf.reduce_max(scores, axis=-1)  # (B, N)
    num_fg = tf.shape(scores)[2]
    # The lowest class reaching the maximum (tf.argmax does not promise a tie rule).
    label_index = tf.where(scores == best[..., None], tf.range(num_fg)[None, None, :], num_fg)
    best_label = tf.reduce_min(label_index, axis=-1) + 1  # (B, N) in 1..C-1
    k = min(top_k, scores.shape[1])
    top_scores, anchor_index = tf.math.top_k(best, k=k)  # (B, k)
    top_boxes = tf.gather(boxes, anchor_index, batch_dims=1)  # (B, k, 4)
    valid = passes_score_threshold(top_scores, score_threshold)
    return {
        fields.BOXES: top_boxes,
        fields.SCORES: top_scores,
        fields.LABELS: tf.gather(best_label, anchor_index, batch_dims=1),
        "anchor_index": anchor_index,
        "keep": greedy_nms(top_boxes, valid, iou_threshold),
    }


def _select_detections(
    candidates: dict[str, tf.Tensor],
    num_fg: tf.Tensor,
    max_detections: int,
    limit: tf.Tensor | None = None,
) -> dict[str, tf.Tensor]:
    """The `max_detections` best kept candidates per image, padded with zeros; only the best
    `limit` (a scalar int32 tensor <= max_detections) of them when given.

    `candidates` holds (B, M) scores, labels, "anchor_index", "keep" and (B, M, 4) boxes.
    """
    # Order candidates by (anchor index, class) so that top_k, which ranks equal scores by
    # lower position first, breaks ties by anchor index then class.
    tie_key = candidates["anchor_index"] * num_fg + candidates[fields.LABELS] - 1
    order = tf.argsort(tie_key, axis=-1, stable=True)  # (B, M)
    # Kept scores are > score_threshold >= 0, so -1 sorts every dropped candidate last.
    masked = tf.where(candidates["keep"], candidates[fields.SCORES], -1.0)
    masked = tf.gather(masked, order, batch_dims=1)
    k = min(max_detections, candidates[fields.SCORES].shape[1])
    _, position = tf.math.top_k(masked, k=k)  # (B, k)
    index = tf.gather(order, position, batch_dims=1)  # (B, k) into the candidates
    picked = {key: tf.gather(value, index, batch_dims=1) for key, value in candidates.items()}
    is_detection = picked["keep"]  # a prefix of every row
    if limit is not None:
        is_detection &= tf.range(k)[None, :] < limit
    pad = [[0, 0], [0, max_detections - k]]
    boxes = tf.where(is_detection[..., None], picked[fields.BOXES], 0.0)
    labels = tf.where(is_detection, tf.cast(picked[fields.LABELS], tf.int32), 0)
    return {
        fields.BOXES: tf.pad(boxes, [*pad, [0, 0]]),
        fields.SCORES: tf.pad(tf.where(is_detection, picked[fields.SCORES], 0.0), pad),
        fields.LABELS: tf.pad(labels, pad),
        fields.NUM_DETECTIONS: tf.reduce_sum(tf.cast(is_detection, tf.int32), axis=1),
    }


def _check_shapes(cls_logits: tf.Tensor, bbox_regression: tf.Tensor, anchors: tf.Tensor) -> None:
    """Raise ValueError unless the shapes are (B, N, C >= 2), (B, N, 4), (N, 4), N static."""
    if cls_logits.shape.rank != 3 or cls_logits.shape[1] is None or cls_logits.shape[2] is None:
        raise ValueError(
            f"cls_logits must have shape (B, N, C) with static N and C, got {cls_logits.shape}"
        )
    num_anchors, num_classes = cls_logits.shape[1], cls_logits.shape[2]
    if num_classes < 2:
        raise ValueError(f"cls_logits needs C >= 2 classes (background + 1), got {num_classes}")
    if bbox_regression.shape.rank != 3 or bbox_regression.shape[1:] != (num_anchors, 4):
        raise ValueError(
            f"bbox_regression must have shape (B, {num_anchors}, 4), got {bbox_regression.shape}"
        )
    if anchors.shape != (num_anchors, 4):
        raise ValueError(f"anchors must have shape ({num_anchors}, 4), got {anchors.shape}")


def decode_detections(
    cls_logits: tf.Tensor,
    bbox_regression: tf.Tensor,
    anchors: tf.Tensor | np.ndarray,
    variances: Sequence[float] = (0.1, 0.1, 0.2, 0.2),
    decoder_config: DecoderConfig | None = None,
    *,
    score_threshold: tf.Tensor | float | None = None,
    max_detections: tf.Tensor | int | None = None,
) -> dict[str, tf.Tensor]:
    """Turn raw network outputs into the best `max_detections` detections per image.

    Args:
        cls_logits: (B, N, C) class logits, class 0 is background; N and C static.
        bbox_regression: (B, N, 4) box deltas (see `ssd_core.box_coder`).
        anchors: (N, 4) float32, normalised `[xmin, ymin, xmax, ymax]`.
        variances: the box coding variances of the model.
        decoder_config: method, thresholds, top_k, K = max_detections, clip; None: the
            `DecoderConfig` defaults (Caffe's).
        score_threshold: this call's score threshold (a float32 scalar, may be a tensor),
            instead of the config's; the caller keeps it at or above the config's (see
            `DecoderConfig.check_honours`: the config's is what the model promises).
        max_detections: this call's detection count (an int32 scalar, may be a tensor), at most
            the config's K; the outputs stay K rows, the rows past it zero.

    Returns:
        A dict of fixed-shape tensors (`ssd_core.fields`), rows sorted by descending score and
        zero after `num_detections`: `boxes` (B, K, 4) float32 normalised
        `[xmin, ymin, xmax, ymax]`, `scores` (B, K) float32, `labels` (B, K) int32 in 1..C-1,
        `num_detections` (B,) int32.

    Raises:
        ValueError: inputs of the wrong shape.
    """
    decoder_config = decoder_config or DecoderConfig()
    cls_logits = tf.cast(tf.convert_to_tensor(cls_logits), tf.float32)
    bbox_regression = tf.cast(tf.convert_to_tensor(bbox_regression), tf.float32)
    anchors = tf.cast(tf.convert_to_tensor(anchors), tf.float32)
    _check_shapes(cls_logits, bbox_regression, anchors)
    if score_threshold is None:
        score_threshold = decoder_config.score_threshold
    threshold = tf.cast(score_threshold, tf.float32)
    limit = None if max_detections is None else tf.cast(max_detections, tf.int32)
    boxes = decode_boxes(bbox_regression, anchors, variances)  # (B, N, 4)
    if decoder_config.clip:
        boxes = clip_boxes(boxes)
    scores = tf.nn.softmax(cls_logits, axis=-1)[..., 1:]  # (B, N, C-1), background dropped
    find = _caffe_candidates if decoder_config.method == "caffe" else _fast_candidates
    num_fg = tf.shape(scores)[2]

    def decode_top(k: int) -> dict[str, tf.Tensor]:
        candidates = find(boxes, scores, threshold, decoder_config.iou_threshold, k)
        return _select_detections(candidates, num_fg, decoder_config.max_detections, limit)

    top_k = min(decoder_config.top_k, scores.shape[1])
    small = min(top_k, SMALL_TOP_K)
    if small == top_k:
        return decode_top(top_k)
    return tf.cond(
        _most_candidates(scores, threshold, decoder_config.method) <= small,
        lambda: decode_top(small),
        lambda: decode_top(top_k),
    )


def _most_candidates(scores: tf.Tensor, threshold: tf.Tensor, method: str) -> tf.Tensor:
    """The largest number of scores above `threshold` of one image and class ("caffe") or of
    one image's best-class scores ("fast"). scores (B, N, C-1) -> int32 scalar."""
    if method == "fast":
        scores = tf.reduce_max(scores, axis=-1, keepdims=True)  # (B, N, 1)
    passing = tf.cast(passes_score_threshold(scores, threshold), tf.int32)
    return tf.reduce_max(tf.reduce_sum(passing, axis=1))


@keras.saving.register_keras_serializable(package="ssd_core")
class DetectionDecoder(keras.layers.Layer):
    """Keras layer: raw SSD outputs -> padded detections (`decode_detections`).

    Args:
        ssd_config: the model's `SSDConfig` (or its dict); anchors and variances come from it.
        decoder_config: the `DecoderConfig` (or its dict); None: the defaults.

    Call with `{"cls_logits": (B, N, C), "bbox_regression": (B, N, 4)}`; returns the dict of
    `decode_detections`. N must equal the config's anchor count.
    """

    def __init__(
        self,
        ssd_config: dict[str, Any] | SSDConfig,
        decoder_config: dict[str, Any] | DecoderConfig | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        if not isinstance(ssd_config, SSDConfig):
            ssd_config = SSDConfig.from_dict(ssd_config)
        if not isinstance(decoder_config, DecoderConfig):
            decoder_config = DecoderConfig.from_dict(decoder_config or {})
        self.ssd_config = ssd_config
        self.decoder_config = decoder_config
        self._anchors = generate_anchors(ssd_config)  # (N, 4) float32, a graph constant

    def _check_inputs(self, inputs: dict[str, Any]) -> None:
        if not isinstance(inputs, dict) or set(inputs) != set(fields.NETWORK_OUTPUTS):
            got = sorted(inputs) if isinstance(inputs, dict) else type(inputs).__name__
            raise ValueError(
                f"DetectionDecoder expects a dict with {', '.join(fields.NETWORK_OUTPUTS)}; "
                f"got {got}"
            )
        num_anchors = self._anchors.shape[0]
        _, n, c = inputs[fields.CLS_LOGITS].shape
        if n is not None and n != num_anchors:
            raise ValueError(f"inputs have {n} anchors but the config generates {num_anchors}")
        num_classes = self.ssd_config.num_classes
        if c is not None and c != num_classes:
            raise ValueError(f"cls_logits has {c} classes but the config has {num_classes}")

    def call(self, inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        self._check_inputs(inputs)
        return decode_detections(
            inputs[fields.CLS_LOGITS],
            inputs[fields.BBOX_REGRESSION],
            self._anchors,
            self.ssd_config.variances,
            self.decoder_config,
        )

    def compute_output_shape(self, input_shape: dict[str, tuple[Any, ...]]) -> dict[str, Any]:
        batch = input_shape[fields.CLS_LOGITS][0]
        k = self.decoder_config.max_detections
        return {
            fields.BOXES: (batch, k, 4),
            fields.SCORES: (batch, k),
            fields.LABELS: (batch, k),
            fields.NUM_DETECTIONS: (batch,),
        }

    def compute_output_spec(self, inputs: dict[str, Any]) -> dict[str, keras.KerasTensor]:
        shapes = self.compute_output_shape({key: value.shape for key, value in inputs.items()})
        return {
            key: keras.KerasTensor(shape, dtype=fields.DETECTION_DTYPES[key])
            for key, shape in shapes.items()
        }

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "ssd_config": self.ssd_config.to_dict(),
            "decoder_config": self.decoder_config.to_dict(),
        }
