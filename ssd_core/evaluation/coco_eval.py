"""COCO box AP through pycocotools, on the same inputs as `evaluate_voc`.

Conversion to COCO: boxes [xmin, ymin, xmax, ymax] pixels become [x, y, w, h] with
w = xmax - xmin (continuous coordinates, no +1), area = w * h; labels are the category ids;
image ids are numbered 1..N in sorted order; `difficult` objects become `iscrowd=1`, which
COCOeval ignores (a COCO dataset parsed by `ssd_core.data.coco` stores crowd regions as
difficult, so they round-trip).
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

# Names of COCOeval.stats, in its order.
STAT_NAMES = (
    "AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
    "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large",
)  # fmt: skip


@dataclass(frozen=True, eq=False)
class COCOResult:
    """COCO evaluation result.

    Attributes:
        stats: STAT_NAMES -> value (COCOeval's -1 where a size range has no ground truth).
        ap: label -> AP@[.5:.95] for that class (all areas, 100 detections), NaN if the class
            has no ground truth.
    """

    stats: dict[str, float]
    ap: dict[int, float]

    @property
    def mAP(self) -> float:  # noqa: N802 - the conventional name
        """AP@[.5:.95], the COCO headline number."""
        return self.stats["AP"]

    def to_dict(self, class_names: Sequence[str] | None = None) -> dict[str, Any]:
        """JSON-ready summary; NaN becomes None, classes keyed by name if given."""

        def key(label: int) -> str:
            return class_names[label - 1] if class_names is not None else str(label)

        def clean(v: float) -> float | None:
            return None if np.isnan(v) else float(v)

        return {
            "metric": "coco",
            "mAP": clean(self.mAP),
            **{name: clean(v) for name, v in self.stats.items()},
            "ap": {key(label): clean(v) for label, v in self.ap.items()},
        }


def to_coco_format(
    detections: Sequence[Mapping[str, Any]],
    ground_truth: Mapping[str, Iterable[Mapping[str, Any]]],
    labels: Sequence[int],
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, int]]:
    """(COCO ground-truth dict, COCO result list, image_id -> COCO integer id)."""
    image_ids = {str(image_id): i + 1 for i, image_id in enumerate(sorted(map(str, ground_truth)))}
    annotations: list[dict[str, Any]] = []
    for image_id, objects in ground_truth.items():
        for obj in objects:
            x0, y0, x1, y1 = (float(v) for v in obj["box"])
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_ids[str(image_id)],
                    "category_id": int(obj["label"]),
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                    "iscrowd": int(bool(obj.get("difficult", False))),
                }
            )
    coco_gt = {
        "images": [{"id": i} for i in image_ids.values()],
        "categories": [{"id": int(label), "name": str(label)} for label in labels],
        "annotations": annotations,
    }
    results = []
    for index, det in enumerate(detections):
        if str(det["image_id"]) not in image_ids:
            raise ValueError(
                f"detection {index} is for image {det['image_id']!r}, which is not in the "
                "ground truth"
            )
        x0, y0, x1, y1 = (float(v) for v in det["box"])
        results.append(
            {
                "image_id": image_ids[str(det["image_id"])],
                "category_id": int(det["label"]),
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "score": float(det["score"]),
            }
        )
    return coco_gt, results, image_ids


def _per_class_ap(coco_eval: Any, labels: Sequence[int]) -> dict[int, float]:
    # eval["precision"]: (T iou thresholds, R recall points, K classes, A areas, M max dets);
    # area "all" is index 0 and 100 detections the last max-dets setting.
    precision = coco_eval.eval["precision"][:, :, :, 0, -1]
    ap = {}
    for k, label in enumerate(labels):
        values = precision[:, :, k]
        values = values[values > -1]
        ap[int(label)] = float(values.mean()) if values.size else float("nan")
    return ap


def evaluate_coco(
    detections: Sequence[Mapping[str, Any]],
    ground_truth: Mapping[str, Iterable[Mapping[str, Any]]],
    labels: Sequence[int] | None = None,
) -> COCOResult:
    """COCO AP@[.5:.95], AP50, AP75, small/medium/large AP and AR, through pycocotools.

    Args:
        detections: `{"image_id", "label", "score", "box"}`, box pixels [xmin, ymin, xmax, ymax].
        ground_truth: image_id -> list of `{"label", "box", "difficult"}` (pixels).
        labels: category ids to evaluate; default: every label in ground truth or detections.

    Returns:
        A `COCOResult`. With no detections at all every stat is 0 (pycocotools cannot load an
        empty result list).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ground_truth = {str(k): list(v) for k, v in ground_truth.items()}
    if labels is None:
        found = {int(o["label"]) for objs in ground_truth.values() for o in objs}
        labels = sorted(found | {int(d["label"]) for d in detections})
    labels = [int(label) for label in labels]
    coco_gt_dict, results, _ = to_coco_format(detections, ground_truth, labels)
    if not results:
        logger.warning("no detections to evaluate; COCO stats are all 0")
        return COCOResult({name: 0.0 for name in STAT_NAMES}, {label: 0.0 for label in labels})
    log = io.StringIO()
    with contextlib.redirect_stdout(log):  # pycocotools prints; the library must not
        coco_gt = COCO()
        coco_gt.dataset = coco_gt_dict
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(results)
        coco_eval = COCOeval(coco_gt, coco_dt, iouType="bbox")
        coco_eval.params.catIds = labels
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    logger.info("pycocotools summary:\n%s", log.getvalue())
    stats = {name: float(v) for name, v in zip(STAT_NAMES, coco_eval.stats, strict=True)}
    return COCOResult(stats, _per_class_ap(coco_eval, labels))
