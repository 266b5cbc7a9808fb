"""Pure box functions in TensorFlow: format conversion, area, clipping and pairwise IoU;
`pairwise_iou_numpy` is the IoU in float32 NumPy for the host-side decoder
(`ssd_core.postprocess_numpy`).

Boxes are `[xmin, ymin, xmax, ymax]` ("corners") or `[cx, cy, w, h]` ("centers") along the last
axis; any leading batch dims are kept. Coordinates are normalised to [0, 1] inside the model
(pixels work too: nothing here assumes a range except `clip_boxes`' defaults). There is no "+1"
pixel convention: a box's width is `xmax - xmin`.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def _as_boxes(boxes: tf.Tensor | object, name: str) -> tf.Tensor:
    """`boxes` as a float tensor whose last axis has length 4 (raises ValueError otherwise)."""
    boxes = tf.convert_to_tensor(boxes)
    if not boxes.dtype.is_floating:
        boxes = tf.cast(boxes, tf.float32)
    if boxes.shape.rank is not None and (boxes.shape.rank == 0 or boxes.shape[-1] not in (4, None)):
        raise ValueError(f"{name} must have shape (..., 4), got {boxes.shape}")
    return boxes


def corners_to_centers(boxes: tf.Tensor) -> tf.Tensor:
    """`[xmin, ymin, xmax, ymax]` -> `[cx, cy, w, h]`, shape (..., 4) in, (..., 4) out."""
    boxes = _as_boxes(boxes, "boxes")
    xmin, ymin, xmax, ymax = tf.unstack(boxes, axis=-1)
    return tf.stack([(xmin + xmax) / 2.0, (ymin + ymax) / 2.0, xmax - xmin, ymax - ymin], axis=-1)


def centers_to_corners(boxes: tf.Tensor) -> tf.Tensor:
    """`[cx, cy, w, h]` -> `[xmin, ymin, xmax, ymax]`, shape (..., 4) in, (..., 4) out."""
    boxes = _as_boxes(boxes, "boxes")
    cx, cy, w, h = tf.unstack(boxes, axis=-1)
    half_w = w / 2.0
    half_h = h / 2.0
    return tf.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=-1)


def box_area(boxes: tf.Tensor) -> tf.Tensor:
    """Area of `[xmin, ymin, xmax, ymax]` boxes, (..., 4) -> (...).

    Inverted boxes (`xmax < xmin` or `ymax < ymin`) have area 0, as in Caffe's `BBoxSize`.
    """
    boxes = _as_boxes(boxes, "boxes")
    xmin, ymin, xmax, ymax = tf.unstack(boxes, axis=-1)
    return tf.maximum(xmax - xmin, 0.0) * tf.maximum(ymax - ymin, 0.0)


def clip_boxes(boxes: tf.Tensor, min_value: float = 0.0, max_value: float = 1.0) -> tf.Tensor:
    """Clamp every coordinate of `[xmin, ymin, xmax, ymax]` boxes (..., 4) to [min, max].

    The defaults keep normalised boxes inside the image.
    """
    if min_value > max_value:
        raise ValueError(f"clip_boxes needs min_value <= max_value, got {min_value} > {max_value}")
    boxes = _as_boxes(boxes, "boxes")
    return tf.clip_by_value(boxes, min_value, max_value)


def pairwise_iou(boxes1: tf.Tensor, boxes2: tf.Tensor) -> tf.Tensor:
    """Intersection over union of every box of `boxes1` with every box of `boxes2`.

    Args:
        boxes1: (..., N, 4) `[xmin, ymin, xmax, ymax]`.
        boxes2: (..., M, 4) same format and units; leading dims broadcast against `boxes1`'s.

    Returns:
        (..., N, M) float IoU in [0, 1]. A pair whose union is empty (two zero-area boxes)
        has IoU 0, never NaN.
    """
    boxes1 = _as_boxes(boxes1, "boxes1")
    boxes2 = _as_boxes(boxes2, "boxes2")
    if boxes1.shape.rank is not None and boxes1.shape.rank < 2:
        raise ValueError(f"boxes1 must have shape (..., N, 4), got {boxes1.shape}")
    if boxes2.shape.rank is not None and boxes2.shape.rank < 2:
        raise ValueError(f"boxes2 must have shape (..., M, 4), got {boxes2.shape}")
    boxes2 = tf.cast(boxes2, boxes1.dtype)
    a = boxes1[..., :, None, :]  # (..., N, 1, 4)
    b = boxes2[..., None, :, :]  # (..., 1, M, 4)
    inter_w = tf.maximum(tf.minimum(a[..., 2], b[..., 2]) - tf.maximum(a[..., 0], b[..., 0]), 0.0)
    inter_h = tf.maximum(tf.minimum(a[..., 3], b[..., 3]) - tf.maximum(a[..., 1], b[..., 1]), 0.0)
    intersection = inter_w * inter_h
    union = box_area(a) + box_area(b) - intersection
    return tf.math.divide_no_nan(intersection, union)


def pairwise_iou_numpy(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """`pairwise_iou` in float32 NumPy, the same operations in the same order (so the same
    IoU to the last bit, and the same NMS decisions at a threshold).

    Args:
        boxes1: (..., N, 4) `[xmin, ymin, xmax, ymax]`, any float dtype (computed in float32).
        boxes2: (..., M, 4) same format and units; leading dims broadcast against `boxes1`'s.

    Returns:
        (..., N, M) float32 IoU in [0, 1]; 0 where the union is empty.

    Raises:
        ValueError: if an argument is not (..., K, 4).
    """
    boxes1 = np.asarray(boxes1, dtype=np.float32)
    boxes2 = np.asarray(boxes2, dtype=np.float32)
    for name, boxes in (("boxes1", boxes1), ("boxes2", boxes2)):
        if boxes.ndim < 2 or boxes.shape[-1] != 4:
            raise ValueError(f"{name} must have shape (..., K, 4), got {boxes.shape}")
    a = boxes1[..., :, None, :]  # (..., N, 1, 4)
    b = boxes2[..., None, :, :]  # (..., 1, M, 4)
    zero = np.float32(0.0)
    inter_w = np.maximum(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), zero)
    inter_h = np.maximum(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), zero)
    intersection = inter_w * inter_h
    union = _area_numpy(a) + _area_numpy(b) - intersection
    iou = np.zeros_like(intersection)
    np.divide(intersection, union, out=iou, where=union != 0)
    return iou


def _area_numpy(boxes: np.ndarray) -> np.ndarray:
    """`box_area` of float32 boxes (..., 4) -> (...)."""
    zero = np.float32(0.0)
    width = np.maximum(boxes[..., 2] - boxes[..., 0], zero)
    return width * np.maximum(boxes[..., 3] - boxes[..., 1], zero)
