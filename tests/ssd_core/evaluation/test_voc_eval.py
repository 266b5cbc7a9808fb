"""evaluate_voc: hand-worked cases and agreement with a plain re-implementation of VOCevaldet."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ssd_core.evaluation import evaluate_voc
from ssd_core.evaluation.voc_eval import voc07_ap, voc2010_ap


def gt(label, box, difficult=False):
    return {"label": label, "box": list(box), "difficult": difficult}


def det(image_id, label, score, box):
    return {"image_id": image_id, "label": label, "score": score, "box": list(box)}


def test_duplicate_detection_is_false_positive():
    truth = {"a": [gt(1, (0, 0, 9, 9))]}
    dets = [det("a", 1, 0.9, (0, 0, 9, 9)), det("a", 1, 0.8, (0, 0, 9, 9))]
    result = evaluate_voc(dets, truth)
    np.testing.assert_allclose(result.precision[1], [1.0, 0.5])
    np.testing.assert_allclose(result.recall[1], [1.0, 1.0])


def test_detection_on_difficult_object_is_ignored():
    truth = {"a": [gt(1, (0, 0, 9, 9)), gt(1, (50, 50, 69, 69), difficult=True)]}
    dets = [det("a", 1, 0.9, (50, 50, 69, 69)), det("a", 1, 0.8, (0, 0, 9, 9))]
    result = evaluate_voc(dets, truth)
    np.testing.assert_allclose(result.precision[1], [1.0])
    np.testing.assert_allclose(result.recall[1], [1.0])
    assert result.num_gt[1] == 1
    assert result.ap[1] == 1.0


def test_overlap_exactly_half_with_inclusive_pixels_is_true_positive():
    # gt covers 10 x 10 inclusive pixels; [0, 0, 4, 9] covers 5 x 10 = 50: IoU 50 / 100 = 0.5.
    # (Without the +1 convention it would be 36 / 81 < 0.5.)
    result = evaluate_voc([det("a", 1, 0.9, (0, 0, 4, 9))], {"a": [gt(1, (0, 0, 9, 9))]})
    assert result.ap[1] == 1.0


def test_overlap_just_below_half_is_false_positive():
    # [0, 0, 4, 8] covers 5 x 9 = 45 inclusive pixels of the 100: IoU 0.45.
    result = evaluate_voc([det("a", 1, 0.9, (0, 0, 4, 8))], {"a": [gt(1, (0, 0, 9, 9))]})
    assert result.ap[1] == 0.0


def hand_curve_case():
    # Four objects; ranked detections TP, FP, TP, FP, TP (one object missed):
    # precision 1, 1/2, 2/3, 1/2, 3/5 at recall 1/4, 1/4, 2/4, 2/4, 3/4.
    truth = {str(i): [gt(1, (0, 0, 9, 9))] for i in range(4)}
    miss = (100, 100, 120, 120)
    dets = [
        det("0", 1, 0.9, (0, 0, 9, 9)),
        det("0", 1, 0.8, miss),
        det("1", 1, 0.7, (0, 0, 9, 9)),
        det("1", 1, 0.6, miss),
        det("2", 1, 0.5, (0, 0, 9, 9)),
    ]
    return dets, truth


def test_hand_worked_curve_precision_and_recall():
    result = evaluate_voc(*hand_curve_case())
    np.testing.assert_allclose(result.precision[1], [1, 1 / 2, 2 / 3, 1 / 2, 3 / 5])
    np.testing.assert_allclose(result.recall[1], [1 / 4, 1 / 4, 2 / 4, 2 / 4, 3 / 4])


def test_hand_worked_curve_11_point_ap():
    # t = 0, .1, .2 -> 1; t = .3, .4, .5 -> 2/3; t = .6, .7 -> 3/5; t = .8, .9, 1 -> 0.
    result = evaluate_voc(*hand_curve_case(), metric="voc07")
    assert result.ap[1] == pytest.approx((3 * 1 + 3 * 2 / 3 + 2 * 3 / 5) / 11, abs=1e-12)


def test_hand_worked_curve_area_under_envelope_ap():
    # Envelope: 1 on (0, 1/4], 2/3 on (1/4, 1/2], 3/5 on (1/2, 3/4], 0 beyond.
    result = evaluate_voc(*hand_curve_case(), metric="voc2010")
    assert result.ap[1] == pytest.approx(0.25 * (1 + 2 / 3 + 3 / 5), abs=1e-12)


def test_class_without_ground_truth_is_nan_and_left_out_of_mean():
    truth = {"a": [gt(1, (0, 0, 9, 9))]}
    dets = [det("a", 1, 0.9, (0, 0, 9, 9)), det("a", 2, 0.9, (0, 0, 9, 9))]
    result = evaluate_voc(dets, truth)
    assert math.isnan(result.ap[2])
    assert result.mAP == 1.0
    assert result.to_dict(("cat", "dog"))["ap"] == {"cat": 1.0, "dog": None}


def test_class_with_ground_truth_and_no_detections_scores_zero():
    result = evaluate_voc([], {"a": [gt(1, (0, 0, 9, 9))]}, labels=[1])
    assert result.ap[1] == 0.0
    assert result.mAP == 0.0


def test_image_without_detections_counts_its_objects_as_missed():
    truth = {"a": [gt(1, (0, 0, 9, 9))], "b": [gt(1, (0, 0, 9, 9))]}
    result = evaluate_voc([det("a", 1, 0.9, (0, 0, 9, 9))], truth)
    np.testing.assert_allclose(result.recall[1], [0.5])
    assert result.ap[1] == pytest.approx(6 / 11)  # precision 1 up to recall 0.5


def test_detection_on_already_detected_object_is_not_rematched():
    # The devkit takes the object of highest overlap; if it is already detected the detection
    # is a duplicate even when another object overlaps it enough.
    truth = {"a": [gt(1, (0, 0, 9, 9)), gt(1, (2, 0, 11, 9))]}
    dets = [det("a", 1, 0.9, (0, 0, 9, 9)), det("a", 1, 0.8, (1, 0, 10, 9))]
    result = evaluate_voc(dets, truth)
    np.testing.assert_allclose(result.precision[1], [1.0, 0.5])


def test_equal_scores_keep_input_order():
    truth = {"a": [gt(1, (0, 0, 9, 9))]}
    hit, miss = (0, 0, 9, 9), (50, 50, 60, 60)
    first_miss = evaluate_voc([det("a", 1, 0.5, miss), det("a", 1, 0.5, hit)], truth)
    first_hit = evaluate_voc([det("a", 1, 0.5, hit), det("a", 1, 0.5, miss)], truth)
    np.testing.assert_allclose(first_miss.precision[1], [0.0, 0.5])
    np.testing.assert_allclose(first_hit.precision[1], [1.0, 0.5])


def test_detection_for_unknown_image_is_rejected():
    with pytest.raises(ValueError, match="image 'zzz', which is not in the ground truth"):
        evaluate_voc([det("zzz", 1, 0.5, (0, 0, 1, 1))], {"a": []})


def test_unknown_metric_is_rejected():
    with pytest.raises(ValueError, match="metric must be one of"):
        evaluate_voc([], {"a": []}, metric="coco")


def test_ap_functions_on_perfect_curve_are_one():
    assert voc07_ap(np.array([0.5, 1.0]), np.array([1.0, 1.0])) == pytest.approx(1.0)
    assert voc2010_ap(np.array([0.5, 1.0]), np.array([1.0, 1.0])) == pytest.approx(1.0)


# Independent reference: a literal loop transcription of VOCevaldet.m / VOCap / 11-point AP,
# keeping ignored detections in the curve with MATLAB's NaN-skipping max.


def reference_class_ap(dets, truth, label, threshold, metric):
    objects = {
        image: [(o["box"], o["difficult"]) for o in objs if o["label"] == label]
        for image, objs in truth.items()
    }
    used = {image: [False] * len(objs) for image, objs in objects.items()}
    npos = sum(1 for objs in objects.values() for _, difficult in objs if not difficult)
    mine = [d for d in dets if d["label"] == label]
    order = sorted(range(len(mine)), key=lambda i: -mine[i]["score"])  # sorted() is stable
    tp, fp = [], []
    for i in order:
        d = mine[i]
        bb = d["box"]
        ovmax, jmax = -math.inf, -1
        for j, (g, _) in enumerate(objects[d["image_id"]]):
            iw = min(bb[2], g[2]) - max(bb[0], g[0]) + 1
            ih = min(bb[3], g[3]) - max(bb[1], g[1]) + 1
            if iw > 0 and ih > 0:
                ua = (bb[2] - bb[0] + 1) * (bb[3] - bb[1] + 1)
                ua += (g[2] - g[0] + 1) * (g[3] - g[1] + 1) - iw * ih
                if iw * ih / ua > ovmax:
                    ovmax, jmax = iw * ih / ua, j
        t = f = 0
        if ovmax >= threshold:
            if objects[d["image_id"]][jmax][1]:
                pass
            elif not used[d["image_id"]][jmax]:
                t, used[d["image_id"]][jmax] = 1, True
            else:
                f = 1
        else:
            f = 1
        tp.append(t)
        fp.append(f)
    ctp = np.cumsum(tp, dtype=float)
    cfp = np.cumsum(fp, dtype=float)
    rec = ctp / npos
    with np.errstate(invalid="ignore"):
        prec = ctp / (ctp + cfp)
    if metric == "voc07":
        ap = 0.0
        for t in [k / 10 for k in range(11)]:
            p = [x for x, r in zip(prec, rec, strict=True) if r >= t and not math.isnan(x)]
            ap += (max(p) if p else 0.0) / 11
        return ap
    mrec = [0.0, *rec, 1.0]
    mpre = [0.0, *prec, 0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = mpre[i + 1] if math.isnan(mpre[i]) else max(mpre[i], mpre[i + 1])
    return sum(
        (mrec[i] - mrec[i - 1]) * mpre[i] for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1]
    )


def random_case(seed):
    rng = np.random.default_rng(seed)
    truth, dets = {}, []
    for image in range(12):
        objs = []
        for _ in range(rng.integers(0, 5)):
            x, y = rng.integers(0, 80, size=2)
            w, h = rng.integers(5, 40, size=2)
            objs.append(gt(int(rng.integers(1, 4)), (x, y, x + w, y + h), bool(rng.random() < 0.2)))
        truth[str(image)] = objs
        for o in objs:  # jittered hits, some duplicated
            for _ in range(rng.integers(0, 3)):
                box = np.asarray(o["box"]) + rng.integers(-4, 5, size=4)
                label = o["label"] if rng.random() < 0.85 else int(rng.integers(1, 4))
                dets.append(det(str(image), label, round(float(rng.random()), 1), box.tolist()))
        for _ in range(rng.integers(0, 4)):  # random false alarms
            x, y = rng.integers(0, 80, size=2)
            box = [int(x), int(y), int(x + rng.integers(3, 30)), int(y + rng.integers(3, 30))]
            dets.append(
                det(str(image), int(rng.integers(1, 4)), round(float(rng.random()), 1), box)
            )
    return dets, truth


@pytest.mark.parametrize("metric", ["voc07", "voc2010"])
@pytest.mark.parametrize("seed", range(8))
def test_agrees_with_plain_reference_implementation(seed, metric):
    dets, truth = random_case(seed)
    result = evaluate_voc(dets, truth, metric=metric)
    for label in (1, 2, 3):
        if result.num_gt.get(label, 0) == 0:
            continue
        expected = reference_class_ap(dets, truth, label, 0.5, metric)
        assert abs(result.ap[label] - expected) <= 1e-9, (label, result.ap[label], expected)
