"""Images as engines take them: a file decoded to (H, W, 3) uint8 RGB (OpenCV, EXIF orientation
applied) and stretched to the model input size by OpenCV's bilinear resize - the service's
request path (`service.images.resize_to_input`) - so what calibrates an int8 network and what
measures its accuracy is what it is served.

(Until the shared inference module of issue 10 holds the one resize implementation, this
mirrors the service's: stretch, `cv2.INTER_LINEAR`.)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ssd_core.data.records import ImageRecord


def read_rgb(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file; ValueError naming the file if it cannot be read."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"{path}: not a readable image")
    return np.ascontiguousarray(bgr[..., ::-1])


def to_input(rgb: np.ndarray, image_size: Sequence[int]) -> np.ndarray:
    """(H, W, 3) uint8 -> (height, width, 3) uint8 at `image_size`, stretched (bilinear)."""
    height, width = int(image_size[0]), int(image_size[1])
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_LINEAR)


def load_inputs(
    records: Sequence[ImageRecord], image_size: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """The records' images as an engine batch (n, height, width, 3) uint8, and their stored
    sizes (n, 2) int (height, width) in pixels, to scale detections back."""
    images, sizes = [], []
    for record in records:
        rgb = read_rgb(record.image_path)
        sizes.append(rgb.shape[:2])
        images.append(to_input(rgb, image_size))
    height, width = int(image_size[0]), int(image_size[1])
    batch = np.stack(images) if images else np.zeros((0, height, width, 3), np.uint8)
    return batch, np.asarray(sizes, int).reshape(-1, 2)


def calibration_images(
    spec: str, split: str, image_size: Sequence[int], count: int
) -> tuple[np.ndarray, dict[str, Any]]:
    """Up to `count` images of a dataset spec (`ssd_core.data.load_dataset`, annotations not
    needed: `images:DIR` works), evenly spread over the split, prepared as the service does.

    Returns:
        (n, height, width, 3) uint8, n = min(count, images in the split); and a description
        (spec, split, image ids) for the quantised network's `calibration.json`.
    """
    from ssd_core.data import load_dataset

    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    records = load_dataset(spec, split).records
    picks = np.unique(np.linspace(0, len(records) - 1, min(count, len(records))).round())
    chosen = [records[int(i)] for i in picks]
    images, _ = load_inputs(chosen, image_size)
    description = {"dataset": spec, "split": split, "image_ids": [r.image_id for r in chosen]}
    return images, description
