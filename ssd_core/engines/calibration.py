"""Calibration images of a post-training int8 quantisation, prepared exactly as the service
prepares a request (`ssd_core.inference.preprocess.prepare_file`: decoding with EXIF
orientation, a large JPEG at a reduced DCT scale, the model's resize policy), so the activation
ranges an int8 network is calibrated on are those it will serve.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ssd_core.config import SSDConfig
from ssd_core.inference.preprocess import prepare_file


def calibration_images(
    spec: str, split: str, config: SSDConfig, count: int
) -> tuple[np.ndarray, dict[str, Any]]:
    """Up to `count` images of a dataset spec (`ssd_core.data.load_dataset`; annotations are not
    needed: `images:DIR` works), evenly spread over the split, as model inputs of `config`.

    Returns:
        (n, height, width, 3) uint8 RGB at `config.image_size`, n = min(count, images in the
        split); and a description (spec, split, image ids) for the quantised network's
        `calibration.json`.
    """
    from ssd_core.data import load_dataset

    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    records = load_dataset(spec, split).records
    picks = np.unique(np.linspace(0, len(records) - 1, min(count, len(records))).round())
    chosen = [records[int(i)] for i in picks]
    height, width = (int(v) for v in config.image_size)
    images = [
        prepare_file(r.image_path, (height, width), config.resize, config.pixel_mean)[0]
        for r in chosen
    ]
    batch = np.stack(images) if images else np.zeros((0, height, width, 3), np.uint8)
    description = {"dataset": spec, "split": split, "image_ids": [r.image_id for r in chosen]}
    return batch, description
