"""Plain NumPy box references shared by the ssd_core tests."""

from __future__ import annotations

import numpy as np


def numpy_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one [xmin, ymin, xmax, ymax] box with (M, 4) boxes in the same units (normalised
    or pixels; no "+1"), as (M,) floats. Boxes must have positive area."""
    inter_w = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    inter_h = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = inter_w * inter_h
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / (area + areas - inter)
