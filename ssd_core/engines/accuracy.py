"""How close one engine's detections are to another's (an int8 network's to its fp32 network's):
the quantisation accuracy guards of README "int8".

- `compare_detections`: detection by detection, every reference detection above a score
  threshold must have a counterpart of the same class with IoU >= `min_iou` and a score within
  `score_tolerance`, and no confident detection may appear without one (the face detector's
  guard: IoU 0.9, score 0.05);
- `run_on_dataset` / `pixel_detections` / `voc07_map`: an engine's detections on a dataset,
  read and stretched as the service does (`ssd_core.engines.images`), and their Pascal VOC
  mAP (the shapes guard: mAP within 0.01 of fp32).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ssd_core.data.records import DetectionDataset, ImageRecord
from ssd_core.engines.base import Engine
from ssd_core.engines.images import load_inputs

Detection = tuple[int, int, float, np.ndarray]
"""(image index, class, score, (4,) normalised [xmin, ymin, xmax, ymax])."""


@dataclass(frozen=True)
class Agreement:
    """The result of `compare_detections`.

    Attributes:
        compared: reference detections that needed a counterpart (score >= threshold).
        missing: those without one; extra: other-side detections (score >= threshold +
            tolerance) without a reference counterpart.
        worst_iou, worst_score_difference: over the matched pairs (1.0 and 0.0 if none).
    """

    compared: int
    missing: list[Detection] = field(default_factory=list)
    extra: list[Detection] = field(default_factory=list)
    worst_iou: float = 1.0
    worst_score_difference: float = 0.0

    @property
    def same(self) -> bool:
        """Every detection has its counterpart, both ways."""
        return not self.missing and not self.extra

    def summary(self) -> str:
        return (
            f"{self.compared - len(self.missing)}/{self.compared} reference detections matched, "
            f"{len(self.extra)} extra; worst IoU {self.worst_iou:.3f}, worst score difference "
            f"{self.worst_score_difference:.3f}"
        )


def detections(outputs: Mapping[str, np.ndarray], score_threshold: float) -> list[Detection]:
    """The valid rows of padded engine outputs with score >= `score_threshold`."""
    found = []
    for image, count in enumerate(np.asarray(outputs["num_detections"])):
        for row in range(int(count)):
            score = float(outputs["scores"][image, row])
            if score >= score_threshold:
                box = np.asarray(outputs["boxes"][image, row], np.float64)
                found.append((image, int(outputs["classes"][image, row]), score, box))
    return found


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two [xmin, ymin, xmax, ymax] boxes."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(width, 0.0) * max(height, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _match(
    wanted: list[Detection], found: list[Detection], min_iou: float, score_tolerance: float
) -> tuple[list[Detection], list[tuple[float, float]]]:
    """Greedy one-to-one matching, most confident first: (unmatched wanted, (IoU, |score
    difference|) of every matched pair). A counterpart has the same image and class, IoU >=
    `min_iou`, score within `score_tolerance`; among several, the highest IoU."""
    used = [False] * len(found)
    missing, pairs = [], []
    for image, label, score, box in sorted(wanted, key=lambda d: -d[2]):
        best, best_iou = None, -1.0
        for j, (other_image, other_label, other_score, other_box) in enumerate(found):
            if used[j] or other_image != image or other_label != label:
                continue
            iou = box_iou(box, other_box)
            if iou >= min_iou and abs(other_score - score) <= score_tolerance and iou > best_iou:
                best, best_iou = j, iou
        if best is None:
            missing.append((image, label, score, box))
        else:
            used[best] = True
            pairs.append((best_iou, abs(found[best][2] - score)))
    return missing, pairs


def compare_detections(
    reference: Mapping[str, np.ndarray],
    outputs: Mapping[str, np.ndarray],
    score_threshold: float,
    min_iou: float = 0.9,
    score_tolerance: float = 0.05,
) -> Agreement:
    """Do padded `outputs` find what padded `reference` finds (same batch of images)?

    Reference detections with score >= `score_threshold` need a counterpart among all of
    `outputs`' valid rows; outputs' detections with score >= `score_threshold +
    score_tolerance` need one among all of the reference's (a detection just under the
    threshold on one side may legitimately sit just over it on the other).
    """
    missing, pairs = _match(
        detections(reference, score_threshold), detections(outputs, 0.0), min_iou, score_tolerance
    )
    extra, _ = _match(
        detections(outputs, score_threshold + score_tolerance),
        detections(reference, 0.0),
        min_iou,
        score_tolerance,
    )
    return Agreement(
        compared=len(detections(reference, score_threshold)),
        missing=missing,
        extra=extra,
        worst_iou=min((iou for iou, _ in pairs), default=1.0),
        worst_score_difference=max((diff for _, diff in pairs), default=0.0),
    )


def run_on_dataset(
    engine: Engine, records: Sequence[ImageRecord], batch_size: int = 8
) -> dict[str, np.ndarray]:
    """The engine's padded outputs on every record's image (read and stretched as the service
    does), batches concatenated, plus `sizes` (n, 2) (height, width) of the stored images."""
    if not records:
        raise ValueError("no images to run on")
    parts: list[dict[str, np.ndarray]] = []
    for start in range(0, len(records), batch_size):
        images, sizes = load_inputs(records[start : start + batch_size], engine.input_size)
        parts.append({**engine.run(images), "sizes": sizes})
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def pixel_detections(
    outputs: Mapping[str, np.ndarray], records: Sequence[ImageRecord]
) -> list[dict[str, Any]]:
    """`run_on_dataset` outputs as `evaluate_voc` detections (pixels of the stored images)."""
    from ssd_core.evaluation.predict import scale_detections

    found: list[dict[str, Any]] = []
    for index, record in enumerate(records):
        height, width = outputs["sizes"][index]
        found += scale_detections(
            record.image_id,
            outputs["boxes"][index],
            outputs["scores"][index],
            outputs["classes"][index],
            int(outputs["num_detections"][index]),
            int(height),
            int(width),
        )
    return found


def voc07_map(outputs: Mapping[str, np.ndarray], dataset: DetectionDataset) -> float:
    """Pascal VOC07 11-point mAP (IoU 0.5) of `run_on_dataset` outputs on an annotated dataset."""
    from ssd_core.evaluation import evaluate_voc

    found = pixel_detections(outputs, dataset.records)
    labels = list(range(1, len(dataset.class_names) + 1))
    return float(evaluate_voc(found, dataset.ground_truth(), 0.5, "voc07", labels=labels).mAP)
