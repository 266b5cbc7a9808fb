"""compare_detections on hand-made detections: matches need the same class, IoU >= 0.9 and a
score within 0.05, both ways, with a tolerance band at the score threshold."""

from __future__ import annotations

import numpy as np

from ssd_core.engines.accuracy import box_iou, compare_detections
from ssd_core.inference import Detections


def outputs(*rows: tuple[int, float, tuple[float, float, float, float]]) -> list[Detections]:
    """One image's detections from (label, score, pixel box) rows."""
    return [
        Detections(
            boxes=np.asarray([box for _, _, box in rows], np.float32).reshape(-1, 4),
            scores=[score for _, score, _ in rows],
            labels=[label for label, _, _ in rows],
            names=tuple(f"class{label}" for label, _, _ in rows),
        )
    ]


FACE = (20.0, 20.0, 60.0, 60.0)  # pixels


def test_box_iou_of_known_boxes():
    assert box_iou(np.array(FACE), np.array(FACE)) == 1.0
    # (20..60) vs (20..56) in x: intersection 36 * 40 over union 40 * 40
    assert abs(box_iou(np.array(FACE), np.array((20.0, 20.0, 56.0, 60.0))) - 0.9) < 1e-9


def test_identical_detections_agree():
    result = compare_detections(outputs((1, 0.9, FACE)), outputs((1, 0.9, FACE)), 0.3)
    assert result.same and result.compared == 1 and result.worst_iou == 1.0


def test_a_box_below_iou_0_9_is_missing_and_extra():
    moved = (20.0, 20.0, 55.0, 60.0)  # IoU 0.875
    result = compare_detections(outputs((1, 0.9, FACE)), outputs((1, 0.9, moved)), 0.3)
    assert len(result.missing) == 1 and len(result.extra) == 1 and not result.same


def test_a_score_off_by_more_than_0_05_or_another_class_does_not_match():
    assert not compare_detections(outputs((1, 0.9, FACE)), outputs((1, 0.84, FACE)), 0.3).same
    assert compare_detections(outputs((1, 0.9, FACE)), outputs((1, 0.86, FACE)), 0.3).same
    assert not compare_detections(outputs((1, 0.9, FACE)), outputs((2, 0.9, FACE)), 0.3).same


def test_detections_near_the_threshold_may_cross_it():
    # Reference just under the threshold, int8 just over: neither side needs the other.
    result = compare_detections(outputs((1, 0.29, FACE)), outputs((1, 0.33, FACE)), 0.3)
    assert result.same and result.compared == 0
    # A confident detection the reference lacks is extra.
    result = compare_detections(outputs(), outputs((1, 0.36, FACE)), 0.3)
    assert len(result.extra) == 1
