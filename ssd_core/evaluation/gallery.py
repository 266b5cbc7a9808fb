"""The evaluation gallery: the images a model gets most wrong, ground truth and detections drawn.

Per image, detections above a display score threshold are matched to ground truth with
the rule of `voc_eval` (the devkit's): in descending score order each detection takes the
object of its class with the highest inclusive-pixel overlap; overlap >= the IoU threshold on
a not yet detected object is a true positive, on a `difficult` object it is ignored, anything
else (low overlap, a duplicate, no object of the class) is a false positive. Non-difficult
objects left undetected are misses. Images are ranked by false positives + misses.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ssd_core.data.records import ImageRecord
from ssd_core.decoder_config import passes_score_threshold
from ssd_core.evaluation.voc_eval import devkit_iou
from ssd_core.visualize import detection_caption, draw_boxes

logger = logging.getLogger(__name__)

# RGB. Ground truth in greens/yellows, detections in blue (right) and red (wrong).
TRUTH_COLOUR = (40, 200, 60)
MISS_COLOUR = (255, 210, 0)
TRUE_POSITIVE_COLOUR = (30, 120, 255)
FALSE_POSITIVE_COLOUR = (235, 30, 30)
LEGEND = (
    ("ground truth, found", TRUTH_COLOUR),
    ("ground truth, missed", MISS_COLOUR),
    ("detection, correct", TRUE_POSITIVE_COLOUR),
    ("detection, false positive", FALSE_POSITIVE_COLOUR),
)


@dataclass
class ImageErrors:
    """One image's matching outcome; detections and objects are the input dicts."""

    image_id: str
    true_positives: list[Mapping[str, Any]] = field(default_factory=list)
    false_positives: list[Mapping[str, Any]] = field(default_factory=list)
    found: list[Mapping[str, Any]] = field(default_factory=list)
    misses: list[Mapping[str, Any]] = field(default_factory=list)

    @property
    def num_errors(self) -> int:
        return len(self.false_positives) + len(self.misses)


@dataclass(frozen=True)
class GalleryEntry:
    """A gallery image written to disk: `path` relative to the report folder."""

    image_id: str
    path: str
    num_false_positives: int
    num_misses: int
    num_true_positives: int


def match_image(
    image_id: str,
    detections: Sequence[Mapping[str, Any]],
    objects: Sequence[Mapping[str, Any]],
    iou_threshold: float = 0.5,
) -> ImageErrors:
    """Match one image's detections to its ground truth (see the module docstring).

    Args:
        detections: `{"label", "score", "box"}` dicts, box pixels [xmin, ymin, xmax, ymax].
        objects: `{"label", "box", "difficult"}` dicts, same pixels.
    """
    errors = ImageErrors(image_id)
    boxes = np.array([o["box"] for o in objects], dtype=np.float64).reshape(-1, 4)
    labels = np.array([int(o["label"]) for o in objects], dtype=np.int64)
    difficult = np.array([bool(o.get("difficult", False)) for o in objects], dtype=bool)
    detected = np.zeros(len(objects), dtype=bool)
    for det in sorted(detections, key=lambda d: -float(d["score"])):
        same_class = np.flatnonzero(labels == int(det["label"]))
        if same_class.size == 0:
            errors.false_positives.append(det)
            continue
        overlaps = devkit_iou(np.asarray(det["box"], np.float64), boxes[same_class])
        best = int(same_class[int(np.argmax(overlaps))])
        if overlaps.max() < iou_threshold:
            errors.false_positives.append(det)
        elif difficult[best]:
            continue
        elif not detected[best]:
            detected[best] = True
            errors.true_positives.append(det)
        else:
            errors.false_positives.append(det)
    for index, obj in enumerate(objects):
        if detected[index]:
            errors.found.append(obj)
        elif not difficult[index]:
            errors.misses.append(obj)
    return errors


def worst_images(
    detections: Sequence[Mapping[str, Any]],
    ground_truth: Mapping[str, Sequence[Mapping[str, Any]]],
    count: int,
    iou_threshold: float = 0.5,
    score_threshold: float = 0.3,
) -> list[ImageErrors]:
    """The `count` images with the most false positives + misses (ties by image id), errors > 0.

    Args:
        detections: every image's `{"image_id", "label", "score", "box"}` dicts; those not
            above `score_threshold` (the `ssd_core.decoder_config` rule) are not shown, so not
            counted.
        ground_truth: image_id -> objects, as `DetectionDataset.ground_truth()` gives.
    """
    by_image: dict[str, list[Mapping[str, Any]]] = {str(i): [] for i in ground_truth}
    for det in detections:
        if passes_score_threshold(float(det["score"]), score_threshold):
            by_image.setdefault(str(det["image_id"]), []).append(det)
    matched = [
        match_image(image_id, dets, ground_truth.get(image_id, ()), iou_threshold)
        for image_id, dets in by_image.items()
    ]
    ranked = sorted(
        (m for m in matched if m.num_errors > 0), key=lambda m: (-m.num_errors, m.image_id)
    )
    return ranked[:count]


def draw_errors(image: np.ndarray, errors: ImageErrors, class_names: Sequence[str]) -> np.ndarray:
    """(H, W, 3) uint8 RGB with ground truth and detections drawn in the `LEGEND` colours."""

    def name(label: Any) -> str:
        index = int(label) - 1
        return class_names[index] if 0 <= index < len(class_names) else str(label)

    layers = [
        (errors.found, TRUTH_COLOUR, lambda o: name(o["label"])),
        (errors.misses, MISS_COLOUR, lambda o: f"missed {name(o['label'])}"),
        (errors.true_positives, TRUE_POSITIVE_COLOUR,
         lambda d: detection_caption(name(d["label"]), float(d["score"]))),
        (errors.false_positives, FALSE_POSITIVE_COLOUR,
         lambda d: "FP " + detection_caption(name(d["label"]), float(d["score"]))),
    ]  # fmt: skip
    boxes, captions, colours = [], [], []
    for items, colour, caption in layers:
        for item in items:
            boxes.append(item["box"])
            captions.append(caption(item))
            colours.append(colour)
    return draw_boxes(image, np.array(boxes, np.float64).reshape(-1, 4), captions, colours)


def write_gallery(
    records: Sequence[ImageRecord],
    worst: Sequence[ImageErrors],
    class_names: Sequence[str],
    out_dir: str | Path,
    folder: str = "gallery",
) -> list[GalleryEntry]:
    """Draw each of `worst` on its image and save `out_dir/folder/<index>_<image id>.jpg`.

    Images are read as stored (no EXIF rotation), the orientation the annotations and the
    evaluation pipeline use.
    """
    paths = {r.image_id: r.image_path for r in records}
    target = Path(out_dir) / folder
    target.mkdir(parents=True, exist_ok=True)
    entries = []
    for rank, errors in enumerate(worst):
        with Image.open(paths[errors.image_id]) as stored:
            image = np.asarray(stored.convert("RGB"))
        name = f"{rank:03d}_{_safe_name(errors.image_id)}.jpg"
        Image.fromarray(draw_errors(image, errors, class_names)).save(target / name, quality=90)
        entries.append(
            GalleryEntry(
                errors.image_id, f"{folder}/{name}", len(errors.false_positives),
                len(errors.misses), len(errors.true_positives),
            )
        )  # fmt: skip
    logger.info("wrote %d gallery images to %s", len(entries), target)
    return entries


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80]
