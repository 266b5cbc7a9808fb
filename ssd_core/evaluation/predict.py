"""Run a model over a dataset through the service's own inference path and collect its
detections in pixel coordinates, in the form `evaluate_voc` / `evaluate_coco` take.

Every image goes through `ssd_core.inference` exactly as a `POST /detect` upload does: the same
decoder (`Predictor.prepare_file`: EXIF orientation, colour modes, a large JPEG decoded at a
reduced DCT scale), the same resize policy and the same mapping back to pixels, so the mAP
measured here is the mAP of what the service serves.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from ssd_core.data.records import ImageRecord
from ssd_core.inference import Detections, Predictor
from ssd_core.inference.batches import batched, load_ahead

logger = logging.getLogger(__name__)


def detection_records(image_id: str, detections: Detections) -> list[dict[str, Any]]:
    """One image's `Detections` as `evaluate_voc` detections `{"image_id", "label", "score",
    "box"}` (box: pixel [xmin, ymin, xmax, ymax])."""
    return [
        {"image_id": image_id, "label": label, "score": score, "box": box}
        for box, score, label, _ in detections.rows()
    ]


def predict_records(
    predictor: Predictor,
    records: Sequence[ImageRecord],
    batch_size: int = 8,
    progress: bool = False,
) -> list[Detections]:
    """`predictor`'s `Detections` (original pixels) on every record's image, in record order.

    Args:
        predictor: the model (`Predictor.from_model(model)`, or over any engine); every
            detection its decoder keeps is returned (no further threshold).
        records: the images to run on.
        batch_size: images per forward pass.
        progress: show a tqdm progress bar.

    Raises:
        OSError, ImageDecodeError: an image cannot be read (the message names it).
    """
    images = load_ahead(lambda record: predictor.prepare_file(record.image_path), records)
    batches: Iterable[list[Any]] = batched(images, batch_size)
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, total=-(-len(records) // batch_size), unit="batch")
    found: list[Detections] = []
    for batch in batches:
        found += predictor.predict_prepared([image.result() for image in batch])
    return found


def predict_dataset(
    predictor: Predictor,
    records: Sequence[ImageRecord],
    batch_size: int = 8,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """`predict_records` as the detections `evaluate_voc` / `evaluate_coco` take."""
    found = predict_records(predictor, records, batch_size, progress)
    detections = [
        row
        for record, image in zip(records, found, strict=True)
        for row in detection_records(record.image_id, image)
    ]
    logger.info("predicted %d detections on %d images", len(detections), len(records))
    return detections
