"""Run an inference-mode SSD over a dataset and collect detections in pixel coordinates."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ssd_core.data.records import ImageRecord

logger = logging.getLogger(__name__)


def scale_detections(
    image_id: str,
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    count: int,
    height: int,
    width: int,
) -> list[dict[str, Any]]:
    """One image's padded model outputs as `evaluate_voc` detections in original pixels.

    Args:
        image_id: the record's id.
        boxes: (K, 4) normalised [xmin, ymin, xmax, ymax]; scores (K,); classes (K,) int.
        count: number of valid leading entries (`num_detections`).
        height, width: original image size in pixels.

    Returns:
        Up to `count` dicts `{"image_id", "label", "score", "box"}`, box in pixels, clipped to
        the image.
    """
    scale = np.array([width, height, width, height], dtype=np.float64)
    pixel = np.clip(np.asarray(boxes[:count], np.float64) * scale, 0.0, scale)
    return [
        {"image_id": image_id, "label": int(c), "score": float(s), "box": b.tolist()}
        for b, s, c in zip(pixel, scores[:count], classes[:count], strict=True)
    ]


def predict_dataset(
    model: Any,
    records: Sequence[ImageRecord],
    batch_size: int = 8,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Detections of an inference-mode SSD on every record, as `evaluate_voc` expects.

    Images are stretched to `model.ssd_config.image_size` by the evaluation `tf.data` pipeline
    (`ssd_core.data.pipeline.evaluation_dataset`) and the normalised output boxes are scaled
    back to each image's stored size.

    Args:
        model: a Keras model whose call returns the inference dict (`boxes` (B, K, 4)
            normalised, `scores` (B, K), `classes` (B, K), `num_detections` (B,)).
        records: the images to run on.
        batch_size: images per forward pass.
        progress: show a tqdm progress bar.
    """
    from ssd_core.data.pipeline import evaluation_dataset

    dataset = evaluation_dataset(records, model.ssd_config, batch_size)
    batches: Iterable = dataset
    if progress:
        from tqdm import tqdm

        batches = tqdm(dataset, total=-(-len(records) // batch_size), unit="batch")
    detections: list[dict[str, Any]] = []
    index = 0
    for images, sizes in batches:
        outputs = model(images, training=False)
        out = {k: np.asarray(outputs[k]) for k in ("boxes", "scores", "classes", "num_detections")}
        for b, (height, width) in enumerate(np.asarray(sizes)):
            detections += scale_detections(
                records[index].image_id,
                out["boxes"][b],
                out["scores"][b],
                out["classes"][b],
                int(out["num_detections"][b]),
                int(height),
                int(width),
            )
            index += 1
    logger.info("predicted %d detections on %d images", len(detections), index)
    return detections
