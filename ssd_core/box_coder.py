"""SSD box coding: boxes <-> regression targets relative to anchors, with variances.

Caffe `CENTER_SIZE` coding with `variance_encoded_in_target: false` (bbox_util.cpp), the coding
the published SSD models were trained with. With anchor centre (acx, acy) and size (aw, ah),
box centre (cx, cy) and size (w, h), and variances (v0, v1, v2, v3):

    tx = (cx - acx) / aw / v0        ty = (cy - acy) / ah / v1
    tw = log(w / aw) / v2            th = log(h / ah) / v3

`decode_boxes` is the inverse. torchvision's `BoxCoder(weights=(10, 10, 5, 5))` is the same
coding: its weights are the inverse of the variances (0.1, 0.1, 0.2, 0.2).

`decode_boxes_numpy` is `decode_boxes` in float32 NumPy, the same operations in the same order,
for the host-side decoder (`ssd_core.postprocess_numpy`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from ssd_core.box_ops import centers_to_corners, corners_to_centers

# Widths/heights are floored here before the log so that degenerate boxes (e.g. zero-size
# padding ground truth in a batch) encode to large finite values instead of -inf, which would
# turn a masked loss into NaN. Real boxes are far larger, so their coding is unaffected.
_MIN_SIZE = 1e-12
# Decoded log-sizes are capped so that a wild regression output gives a huge but finite box
# instead of inf (inf - inf = NaN in IoU). exp(log(1000 / 16)) = 62.5 times the anchor size,
# the cap torchvision uses (`bbox_xform_clip`); no trained SSD output comes near it.
_MAX_LOG_SCALE = math.log(1000.0 / 16.0)


def _as_float32(values: tf.Tensor | object) -> tf.Tensor:
    """Any tensor-like (float16 from mixed precision, float64 NumPy, lists) as float32."""
    return tf.cast(tf.convert_to_tensor(values), tf.float32)


def _checked_variances(variances: Sequence[float]) -> list[float]:
    """`variances` as 4 floats; ValueError unless they are 4 positive values."""
    if len(variances) != 4 or any(float(v) <= 0.0 for v in variances):
        raise ValueError(f"variances must be 4 positive values, got {tuple(variances)}")
    return [float(v) for v in variances]


def _variances_tensor(variances: Sequence[float], dtype: tf.DType) -> tf.Tensor:
    return tf.constant(_checked_variances(variances), dtype=dtype)


def _check_last_axis(tensor: tf.Tensor, name: str) -> None:
    rank = tensor.shape.rank
    if rank is not None and (rank < 2 or tensor.shape[-1] not in (4, None)):
        raise ValueError(f"{name} must have shape (..., N, 4), got {tensor.shape}")


def encode_boxes(
    boxes: tf.Tensor, anchors: tf.Tensor, variances: Sequence[float] = (0.1, 0.1, 0.2, 0.2)
) -> tf.Tensor:
    """Regression targets of `boxes` relative to `anchors`.

    Args:
        boxes: (..., N, 4) float32, normalised `[xmin, ymin, xmax, ymax]`, one box per anchor
            (e.g. the ground truth matched to each anchor).
        anchors: (N, 4) float32, normalised `[xmin, ymin, xmax, ymax]`; broadcast over the
            leading dims of `boxes`.
        variances: (v0, v1, v2, v3), positive; (0.1, 0.1, 0.2, 0.2) for every SSD preset.

    Returns:
        (..., N, 4) float32 deltas `[tx, ty, tw, th]`.

    Raises:
        ValueError: if a shape's last axis is not 4 or a variance is not positive.
    """
    boxes = _as_float32(boxes)
    anchors = _as_float32(anchors)
    _check_last_axis(boxes, "boxes")
    _check_last_axis(anchors, "anchors")
    scale = _variances_tensor(variances, tf.float32)
    box_c = corners_to_centers(boxes)
    anchor_c = corners_to_centers(anchors)
    centre_delta = (box_c[..., :2] - anchor_c[..., :2]) / anchor_c[..., 2:]
    size_delta = tf.math.log(tf.maximum(box_c[..., 2:], _MIN_SIZE) / anchor_c[..., 2:])
    return tf.concat([centre_delta, size_delta], axis=-1) / scale


def decode_boxes(
    deltas: tf.Tensor, anchors: tf.Tensor, variances: Sequence[float] = (0.1, 0.1, 0.2, 0.2)
) -> tf.Tensor:
    """Boxes from regression outputs `deltas` relative to `anchors` (inverse of `encode_boxes`).

    Args:
        deltas: (..., N, 4) float32 `[tx, ty, tw, th]` (the network's `bbox_regression`).
        anchors: (N, 4) float32, normalised `[xmin, ymin, xmax, ymax]`; broadcast over the
            leading dims of `deltas`.
        variances: (v0, v1, v2, v3), positive, the same as used for encoding.

    Returns:
        (..., N, 4) float32, normalised `[xmin, ymin, xmax, ymax]`, not clipped. Sizes are
        capped at 62.5 times the anchor size so the result is always finite.

    Raises:
        ValueError: if a shape's last axis is not 4 or a variance is not positive.
    """
    deltas = _as_float32(deltas)
    anchors = _as_float32(anchors)
    _check_last_axis(deltas, "deltas")
    _check_last_axis(anchors, "anchors")
    scaled = deltas * _variances_tensor(variances, tf.float32)
    anchor_c = corners_to_centers(anchors)
    centre = anchor_c[..., :2] + scaled[..., :2] * anchor_c[..., 2:]
    size = anchor_c[..., 2:] * tf.exp(tf.minimum(scaled[..., 2:], _MAX_LOG_SCALE))
    return centers_to_corners(tf.concat([centre, size], axis=-1))


def decode_boxes_numpy(
    deltas: np.ndarray, anchors: np.ndarray, variances: Sequence[float] = (0.1, 0.1, 0.2, 0.2)
) -> np.ndarray:
    """`decode_boxes` in float32 NumPy: boxes from `deltas` relative to `anchors`.

    The same float32 operations in the same order as `decode_boxes` (and its
    `corners_to_centers` / `centers_to_corners`), so the results agree to the last bit except
    where NumPy's `exp` and TensorFlow's round differently (an ulp of the size).

    Args:
        deltas: (..., 4) `[tx, ty, tw, th]`, any float dtype (computed in float32).
        anchors: (..., 4) normalised `[xmin, ymin, xmax, ymax]`, broadcast against `deltas`
            (e.g. (N, 4) for all anchors, or the anchors gathered for each delta).
        variances: (v0, v1, v2, v3), positive, the same as used for encoding.

    Returns:
        (..., 4) float32, normalised `[xmin, ymin, xmax, ymax]`, not clipped, always finite.

    Raises:
        ValueError: if a last axis is not 4 or a variance is not positive.
    """
    deltas = np.asarray(deltas, dtype=np.float32)
    anchors = np.asarray(anchors, dtype=np.float32)
    for name, array in (("deltas", deltas), ("anchors", anchors)):
        if array.ndim < 1 or array.shape[-1] != 4:
            raise ValueError(f"{name} must have shape (..., 4), got {array.shape}")
    scaled = deltas * np.asarray(_checked_variances(variances), dtype=np.float32)
    anchor_centre = (anchors[..., :2] + anchors[..., 2:]) / np.float32(2.0)
    anchor_size = anchors[..., 2:] - anchors[..., :2]
    centre = anchor_centre + scaled[..., :2] * anchor_size
    size = anchor_size * np.exp(np.minimum(scaled[..., 2:], np.float32(_MAX_LOG_SCALE)))
    half = size / np.float32(2.0)
    return np.concatenate([centre - half, centre + half], axis=-1)
