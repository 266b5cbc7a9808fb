"""Detection metrics: Pascal VOC mAP (devkit semantics) and COCO AP (through pycocotools).

Both take the same inputs: `detections`, a list of `{"image_id", "label", "score", "box"}`,
and `ground_truth`, image_id -> list of `{"label", "box", "difficult"}`; boxes are pixels
[xmin, ymin, xmax, ymax], labels 1-based (`DetectionDataset.ground_truth()` gives this form).
"""

from ssd_core.evaluation.coco_eval import COCOResult, evaluate_coco
from ssd_core.evaluation.voc_eval import VOCResult, evaluate_voc

__all__ = ["COCOResult", "VOCResult", "evaluate_coco", "evaluate_voc"]
