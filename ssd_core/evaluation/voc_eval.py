"""Pascal VOC detection mAP with the semantics of the official devkit (`VOCevaldet.m`).

Per class:
- detections are sorted by descending score; ties keep their input order (MATLAB's `sort` is
  stable);
- each detection is compared with every ground-truth object of its class in its image, and
  takes the one of highest overlap (the first on ties). Overlap uses the devkit's inclusive
  pixel convention: widths and heights are `max - min + 1`;
- overlap >= `iou_threshold` on a `difficult` object: neither TP nor FP (ignored);
  on an object not yet detected: TP, and the object is marked detected;
  on an object already detected: FP (a duplicate). Note that, as in the devkit, the duplicate
  is not re-matched to a second-best object;
- overlap below the threshold, or no object of the class in the image: FP;
- recall = cumulative TP / number of non-difficult objects, precision = cumulative TP /
  (cumulative TP + FP), both over the non-ignored detections in score order.

AP is the VOC2007 11-point interpolated precision (`metric="voc07"`) or, from VOC2010 on, the
area under the monotone precision envelope (`metric="voc2010"`).

A class with no non-difficult ground truth has no defined recall: its AP is NaN (the devkit
divides by zero) and it is left out of the mean. A class with ground truth but no detections
has AP 0.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

METRICS = ("voc07", "voc2010")


@dataclass(frozen=True, eq=False)
class VOCResult:
    """Pascal VOC evaluation result.

    Attributes:
        mAP: mean of `ap` over classes with ground truth (NaN if no class has any).
        ap: label -> AP (NaN for a class with no non-difficult ground truth).
        precision, recall: label -> (D,) float64 arrays over that class's non-ignored
            detections in descending score order.
        num_gt: label -> number of non-difficult ground-truth objects.
        metric: "voc07" or "voc2010". iou_threshold: the overlap needed for a TP.
    """

    mAP: float  # noqa: N815 - the name every detection paper and tool uses
    ap: dict[int, float]
    precision: dict[int, np.ndarray]
    recall: dict[int, np.ndarray]
    num_gt: dict[int, int]
    metric: str
    iou_threshold: float

    def to_dict(self, class_names: Sequence[str] | None = None) -> dict[str, Any]:
        """JSON-ready summary; classes are keyed by name (label i+1 = class_names[i]) if given.

        NaN APs become None (JSON has no NaN).
        """

        def key(label: int) -> str:
            return class_names[label - 1] if class_names is not None else str(label)

        def clean(value: float) -> float | None:
            return None if math.isnan(value) else float(value)

        return {
            "metric": self.metric,
            "iou_threshold": self.iou_threshold,
            "mAP": clean(self.mAP),
            "ap": {key(label): clean(value) for label, value in self.ap.items()},
            "num_gt": {key(label): n for label, n in self.num_gt.items()},
        }


def devkit_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Overlap of one pixel box (4,) with boxes (K, 4), devkit inclusive-pixel convention.

    Pairs that do not intersect (inclusive width or height <= 0) have overlap 0.
    """
    iw = np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]) + 1
    ih = np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]) + 1
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    area_a = (box[2] - box[0] + 1) * (box[3] - box[1] + 1)
    area_b = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    union = area_a + area_b - inter
    return np.where(inter > 0, inter / np.where(inter > 0, union, 1.0), 0.0)


def voc07_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC2007 11-point interpolated AP: mean over t in {0, 0.1, ..., 1} of max precision at
    recall >= t (0 where no point reaches t)."""
    total = 0.0
    # k / 10 is the double nearest each threshold; 0:0.1:1 style accumulation gives
    # 0.30000000000000004 and would miss a recall of exactly 3 / 10.
    for t in np.arange(11) / 10.0:
        reached = precision[recall >= t]
        total += float(reached.max()) if reached.size else 0.0
    return total / 11.0


def voc2010_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC2010+ AP: area under the precision envelope (precision made non-increasing)."""
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[steps] - mrec[steps - 1]) * mpre[steps]))


def _ground_truth_by_label(
    ground_truth: Mapping[str, Iterable[Mapping[str, Any]]],
) -> dict[int, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """label -> image_id -> (boxes (K, 4) float64, difficult (K,) bool)."""
    grouped: dict[int, dict[str, tuple[list, list]]] = {}
    for image_id, objects in ground_truth.items():
        for index, obj in enumerate(objects):
            box = np.asarray(obj["box"], dtype=np.float64)
            if box.shape != (4,):
                raise ValueError(
                    f"ground truth {image_id!r} object {index}: box must be [xmin, ymin, xmax, "
                    f"ymax], got {obj['box']!r}"
                )
            boxes, difficult = grouped.setdefault(int(obj["label"]), {}).setdefault(
                str(image_id), ([], [])
            )
            boxes.append(box)
            difficult.append(bool(obj.get("difficult", False)))
    return {
        label: {
            image_id: (np.asarray(b, np.float64).reshape(-1, 4), np.asarray(d, bool))
            for image_id, (b, d) in images.items()
        }
        for label, images in grouped.items()
    }


def _check_detections(
    detections: Sequence[Mapping[str, Any]], ground_truth: Mapping[str, Any]
) -> None:
    for index, det in enumerate(detections):
        missing = {"image_id", "label", "score", "box"} - set(det)
        if missing:
            raise ValueError(f"detection {index} lacks key(s) {sorted(missing)}: {det!r}")
        if str(det["image_id"]) not in ground_truth:
            raise ValueError(
                f"detection {index} is for image {det['image_id']!r}, which is not in the "
                "ground truth (every evaluated image needs an entry, even an empty list)"
            )
        if len(det["box"]) != 4:
            raise ValueError(f"detection {index}: box must have 4 values, got {det['box']!r}")


def _match_class(
    detections: Sequence[Mapping[str, Any]],
    truth: Mapping[str, tuple[np.ndarray, np.ndarray]],
    iou_threshold: float,
) -> tuple[np.ndarray, np.ndarray]:
    """TP and FP flags (D,) in descending score order, ignored detections dropped."""
    scores = np.array([float(d["score"]) for d in detections], dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    detected = {image_id: np.zeros(len(d), bool) for image_id, (_, d) in truth.items()}
    tp = np.zeros(len(order), bool)
    fp = np.zeros(len(order), bool)
    for rank, index in enumerate(order):
        det = detections[index]
        image_id = str(det["image_id"])
        if image_id not in truth:
            fp[rank] = True
            continue
        gt_boxes, gt_difficult = truth[image_id]
        overlaps = devkit_iou(np.asarray(det["box"], np.float64), gt_boxes)
        best = int(np.argmax(overlaps))  # first of equal maxima, as the devkit's `ov > ovmax`
        if overlaps[best] < iou_threshold:
            fp[rank] = True
        elif gt_difficult[best]:
            continue
        elif not detected[image_id][best]:
            tp[rank] = True
            detected[image_id][best] = True
        else:
            fp[rank] = True
    kept = tp | fp
    return tp[kept], fp[kept]


def evaluate_voc(
    detections: Sequence[Mapping[str, Any]],
    ground_truth: Mapping[str, Iterable[Mapping[str, Any]]],
    iou_threshold: float = 0.5,
    metric: str = "voc07",
    labels: Sequence[int] | None = None,
) -> VOCResult:
    """Pascal VOC mAP of detections against ground truth (see the module docstring).

    Args:
        detections: `{"image_id", "label", "score", "box"}` dicts; box is pixels
            [xmin, ymin, xmax, ymax].
        ground_truth: image_id -> list of `{"label", "box", "difficult"}` (pixels); every image
            evaluated must be present, with an empty list if it has no objects.
        iou_threshold: minimum overlap for a match (the devkit's `minoverlap`, compared with >=).
        metric: "voc07" (11-point) or "voc2010" (area under the precision envelope).
        labels: classes to evaluate; default: every label in the ground truth or detections.

    Returns:
        A `VOCResult`.

    Raises:
        ValueError: unknown metric, malformed input, or a detection for an unknown image.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    ground_truth = {str(k): list(v) for k, v in ground_truth.items()}
    _check_detections(detections, ground_truth)
    truth = _ground_truth_by_label(ground_truth)
    by_label: dict[int, list[Mapping[str, Any]]] = {}
    for det in detections:
        by_label.setdefault(int(det["label"]), []).append(det)
    if labels is None:
        labels = sorted(set(truth) | set(by_label))
    ap_fn = voc07_ap if metric == "voc07" else voc2010_ap
    ap, precision, recall, num_gt = {}, {}, {}, {}
    for label in labels:
        class_truth = truth.get(label, {})
        npos = int(sum((~d).sum() for _, d in class_truth.values()))
        tp, fp = _match_class(by_label.get(label, []), class_truth, iou_threshold)
        ctp, cfp = np.cumsum(tp, dtype=np.float64), np.cumsum(fp, dtype=np.float64)
        precision[label] = ctp / np.maximum(ctp + cfp, 1.0)
        recall[label] = ctp / npos if npos else np.full(ctp.shape, np.nan)
        ap[label] = ap_fn(recall[label], precision[label]) if npos else math.nan
        num_gt[label] = npos
    with_gt = [v for v in ap.values() if not math.isnan(v)]
    if not with_gt:
        logger.warning("no class has non-difficult ground truth; mAP is NaN")
    m_ap = float(np.mean(with_gt)) if with_gt else math.nan
    return VOCResult(m_ap, ap, precision, recall, num_gt, metric, float(iou_threshold))
