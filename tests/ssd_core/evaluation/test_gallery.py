"""The gallery's matching and ranking (devkit rule, errors = false positives + misses)."""

from __future__ import annotations

import numpy as np

from ssd_core.evaluation.gallery import (
    FALSE_POSITIVE_COLOUR,
    MISS_COLOUR,
    draw_errors,
    match_image,
    worst_images,
)

CAT = [10, 10, 50, 50]


def det(box, label=1, score=0.9, image_id="a"):
    return {"image_id": image_id, "label": label, "score": score, "box": box}


def obj(box, label=1, difficult=False):
    return {"label": label, "box": box, "difficult": difficult}


def test_duplicate_wrong_class_and_low_overlap_are_false_positives():
    errors = match_image(
        "a",
        [det(CAT, score=0.9), det(CAT, score=0.8), det(CAT, label=2), det([60, 60, 90, 90])],
        [obj(CAT)],
    )
    assert [d["score"] for d in errors.true_positives] == [0.9]
    assert len(errors.false_positives) == 3 and errors.misses == []


def test_difficult_objects_are_neither_found_nor_missed():
    errors = match_image("a", [det(CAT)], [obj(CAT, difficult=True), obj([60, 60, 90, 90])])
    assert errors.true_positives == [] and errors.false_positives == []
    assert errors.misses == [obj([60, 60, 90, 90])]


def test_worst_images_rank_by_errors_and_ignore_low_scores():
    truth = {"a": [obj(CAT)], "b": [obj(CAT), obj([60, 60, 90, 90])], "c": [obj(CAT)]}
    dets = [det(CAT, image_id="a"), det(CAT, image_id="c"), det(CAT, image_id="c", score=0.1)]
    worst = worst_images(dets, truth, count=5, score_threshold=0.3)
    assert [(w.image_id, w.num_errors) for w in worst] == [("b", 2)]


def test_draw_errors_colours_misses_and_false_positives():
    errors = match_image("a", [det([60, 5, 95, 40])], [obj(CAT)])
    drawn = draw_errors(np.zeros((100, 100, 3), np.uint8), errors, ["cat"])
    assert tuple(drawn[30, 10]) == MISS_COLOUR
    assert tuple(drawn[35, 60]) == FALSE_POSITIVE_COLOUR
