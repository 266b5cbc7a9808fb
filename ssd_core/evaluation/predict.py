"""Run a model over a dataset through the service's own inference path and collect its
detections in pixel coordinates, in the form `evaluate_voc` / `evaluate_coco` take.

Every image goes through `ssd_core.inference` exactly as a `POST /detect` upload does: the same
decoder (`read_image`: EXIF orientation, colour modes), the same resize policy and the same
mapping back to pixels, so the mAP measured here is the mAP of what the service serves.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from ssd_core.data.records import ImageRecord
from ssd_core.inference import Detections, Predictor, read_image
from ssd_core.inference.batches import batched, load_ahead

logger = logging.getLogger(__name__)


def detection_records(image_id: str, detections: Detections) -> list[dict[str, Any]]:
    """One image's `Detections` as `evaluate_voc` detections `{"image_id", "label", "score",
    "box"}` (box: pixel [xmin, ymin, xmax, ymax])."""
    return [
        {"image_id": image_id, "label": label, "score": score, "box": box}
        for box, score, label, _ in detections.rows()
    ]


def predict_dataset(
    predictor: Predictor,
    records: Sequence[ImageRecord],
    batch_size: int = 8,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Detections of `predictor` on every record, as `evaluate_voc` expects.

    Args:
        predictor: the model (`Predictor.from_model(model)`); every detection its decoder
            keeps is returned (no further threshold).
        records: the images to run on.
        batch_size: images per forward pass.
        progress: show a tqdm progress bar.

    Raises:
        OSError, ImageDecodeError: an image cannot be read (the message names it).
    """
    images = load_ahead(lambda record: read_image(record.image_path), records)
    pairs = zip(records, images, strict=True)
    batches: Iterable[list[tuple[ImageRecord, Any]]] = batched(pairs, batch_size)
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, total=-(-len(records) // batch_size), unit="batch")
    detections: list[dict[str, Any]] = []
    for batch in batches:
        results = predictor.predict([image.result() for _, image in batch])
        for (record, _), found in zip(batch, results, strict=True):
            detections += detection_records(record.image_id, found)
    logger.info("predicted %d detections on %d images", len(detections), len(records))
    return detections
