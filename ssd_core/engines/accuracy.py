"""How close one engine's detections are to another's (an int8 network's to its fp32 network's):
the quantisation accuracy guards of README "int8".

- `compare_detections`: detection by detection, every reference detection above a score
  threshold must have a counterpart of the same class with IoU >= `min_iou` and a score within
  `score_tolerance`, and no confident detection may appear without one (the face detector's
  guard: IoU 0.9, score 0.05);
- `voc07_map`: the Pascal VOC07 mAP of per-image detections (the shapes guard: mAP within 0.01
  of fp32).

Both take per-image `Detections` in original pixels, made by the one inference path
(`ssd_core.evaluation.predict.predict_records` over a `Predictor` of the engine), so what is
guarded is what is served.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ssd_core.data.records import DetectionDataset
from ssd_core.inference import Detections

Detection = tuple[int, int, float, np.ndarray]
"""(image index, label, score, (4,) pixel [xmin, ymin, xmax, ymax])."""


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


def detections(found: Sequence[Detections], score_threshold: float) -> list[Detection]:
    """Every image's detections with score >= `score_threshold`, as (image, label, score, box)."""
    return [
        (image, int(label), float(score), np.asarray(box, np.float64))
        for image, one in enumerate(found)
        for box, score, label in zip(one.boxes, one.scores, one.labels, strict=True)
        if score >= score_threshold
    ]


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
    reference: Sequence[Detections],
    candidate: Sequence[Detections],
    score_threshold: float,
    min_iou: float = 0.9,
    score_tolerance: float = 0.05,
) -> Agreement:
    """Does `candidate` find what `reference` finds (the same images, in the same order)?

    Reference detections with score >= `score_threshold` need a counterpart among all of the
    candidate's; candidate detections with score >= `score_threshold + score_tolerance` need
    one among all of the reference's (a detection just under the threshold on one side may
    legitimately sit just over it on the other).
    """
    missing, pairs = _match(
        detections(reference, score_threshold), detections(candidate, 0.0), min_iou, score_tolerance
    )
    extra, _ = _match(
        detections(candidate, score_threshold + score_tolerance),
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


def voc07_map(found: Sequence[Detections], dataset: DetectionDataset) -> float:
    """Pascal VOC07 11-point mAP (IoU 0.5) of per-record detections on an annotated dataset."""
    from ssd_core.evaluation import evaluate_voc
    from ssd_core.evaluation.predict import detection_records

    rows = [
        row
        for record, image in zip(dataset.records, found, strict=True)
        for row in detection_records(record.image_id, image)
    ]
    labels = list(range(1, len(dataset.class_names) + 1))
    return float(evaluate_voc(rows, dataset.ground_truth(), 0.5, "voc07", labels=labels).mAP)
