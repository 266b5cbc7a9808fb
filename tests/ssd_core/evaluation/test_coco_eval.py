"""evaluate_coco against pycocotools run directly on hand-converted COCO data."""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ssd_core.evaluation.coco_eval import STAT_NAMES, evaluate_coco


def random_case(seed):
    rng = np.random.default_rng(seed)
    truth, dets = {}, []
    for image in range(10):
        objs = []
        for _ in range(rng.integers(0, 5)):
            x, y = rng.uniform(0, 150, size=2)
            w, h = rng.uniform(4, 120, size=2)
            objs.append({"label": int(rng.integers(1, 4)), "box": [x, y, x + w, y + h],
                         "difficult": bool(rng.random() < 0.1)})  # fmt: skip
        truth[f"img{image}"] = objs
        for o in objs:
            for _ in range(rng.integers(0, 3)):
                box = (np.asarray(o["box"]) + rng.normal(0, 4, size=4)).tolist()
                dets.append({"image_id": f"img{image}", "label": o["label"],
                             "score": float(rng.random()), "box": box})  # fmt: skip
        for _ in range(rng.integers(0, 3)):
            x, y = rng.uniform(0, 150, size=2)
            dets.append({"image_id": f"img{image}", "label": int(rng.integers(1, 4)),
                         "score": float(rng.random()), "box": [x, y, x + 30, y + 20]})  # fmt: skip
    return dets, truth


def pycocotools_directly(dets, truth):
    """Convert by hand to COCO xywh (crowd = difficult) and run COCOeval."""
    ids = {name: i for i, name in enumerate(sorted(truth), start=1)}
    anns = []
    for name, objs in truth.items():
        for o in objs:
            x0, y0, x1, y1 = o["box"]
            anns.append({"id": len(anns) + 1, "image_id": ids[name], "category_id": o["label"],
                         "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
                         "iscrowd": int(o["difficult"])})  # fmt: skip
    results = [
        {"image_id": ids[d["image_id"]], "category_id": d["label"], "score": d["score"],
         "bbox": [d["box"][0], d["box"][1], d["box"][2] - d["box"][0], d["box"][3] - d["box"][1]]}
        for d in dets
    ]  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        images = [{"id": i} for i in ids.values()]
        categories = [{"id": c} for c in (1, 2, 3)]
        gt.dataset = {"images": images, "categories": categories, "annotations": anns}
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(results), iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


@pytest.mark.parametrize("seed", range(3))
def test_agrees_with_pycocotools_run_directly(seed):
    dets, truth = random_case(seed)
    result = evaluate_coco(dets, truth, labels=[1, 2, 3])
    np.testing.assert_allclose(
        [result.stats[n] for n in STAT_NAMES], pycocotools_directly(dets, truth), atol=1e-12
    )


def test_perfect_detections_score_one():
    truth = {"a": [{"label": 1, "box": [10, 10, 60, 50], "difficult": False}]}
    dets = [{"image_id": "a", "label": 1, "score": 0.9, "box": [10, 10, 60, 50]}]
    result = evaluate_coco(dets, truth)
    assert result.mAP == pytest.approx(1.0)
    assert result.stats["AP50"] == pytest.approx(1.0)
    assert result.ap == {1: pytest.approx(1.0)}


def test_class_without_ground_truth_has_nan_ap():
    truth = {"a": [{"label": 1, "box": [10, 10, 60, 50], "difficult": False}]}
    dets = [{"image_id": "a", "label": 2, "score": 0.9, "box": [10, 10, 60, 50]}]
    result = evaluate_coco(dets, truth)
    assert math.isnan(result.ap[2])
    assert result.to_dict(("cat", "dog"))["ap"]["dog"] is None


def test_no_detections_give_zero_without_error():
    truth = {"a": [{"label": 1, "box": [10, 10, 60, 50], "difficult": False}]}
    result = evaluate_coco([], truth)
    assert result.mAP == 0.0
