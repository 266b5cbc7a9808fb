"""ssd_core.visualize: which pixels a drawing changes, and with what."""

from __future__ import annotations

import numpy as np
import pytest

from ssd_core.inference import Detections
from ssd_core.visualize import (
    PALETTE,
    class_colour,
    draw_boxes,
    draw_detections,
    label_rect,
    outline_rect,
    style_for,
)

RED, WHITE = (255, 0, 0), (255, 255, 255)


def test_outline_covers_the_pixels_the_box_touches():
    # [10.2, 5.0, 20.0, 9.5] touches columns 10..19 and rows 5..9.
    assert outline_rect([10.2, 5.0, 20.0, 9.5], 50, 50) == (10, 5, 20, 10)
    assert outline_rect([-4, -4, 80, 80], 50, 60) == (0, 0, 60, 50)  # clipped
    assert outline_rect([30, 30, 30, 30], 50, 50) == (30, 30, 31, 31)  # at least one pixel


def test_one_pixel_outline_changes_exactly_the_box_border():
    image = np.zeros((40, 60, 3), np.uint8)
    drawn = draw_boxes(image, [[10, 20, 30, 35]], [""], [RED])
    expected = np.zeros((40, 60), bool)
    expected[20:35, 10:30] = True
    expected[21:34, 11:29] = False
    assert np.array_equal(np.any(drawn != image, axis=-1), expected)
    assert np.all(drawn[expected] == RED)
    assert not image.any()  # the input is untouched


def test_caption_sits_above_the_box_or_inside_at_the_top():
    style = style_for(200, 300)
    above = label_rect([50, 100, 150, 180], "circle 0.91", 200, 300, style)
    assert above[3] == 100 and above[0] == 50 and above[1] < 100
    inside = label_rect([50, 2, 150, 180], "circle 0.91", 200, 300, style)
    assert inside[1] == 2 and inside[3] > 2
    at_right_edge = label_rect([295, 100, 300, 180], "circle 0.91", 200, 300, style)
    assert at_right_edge[2] == 300 and at_right_edge[0] < 295


def test_caption_pixels_stay_inside_the_caption_rectangle():
    image = np.zeros((120, 160, 3), np.uint8)
    box = [40, 60, 120, 110]
    drawn = draw_boxes(image, [box], ["triangle 0.55"], [WHITE])
    x0, y0, x1, y1 = label_rect(box, "triangle 0.55", 120, 160, style_for(120, 160))
    changed = np.any(drawn != image, axis=-1)
    changed[60:110, 40:120] = False  # the outline (and everything inside the box)
    caption = np.zeros_like(changed)
    caption[y0:y1, x0:x1] = True
    assert changed[caption].mean() > 0.5 and not np.any(changed & ~caption)


def test_draw_detections_uses_class_colours_and_draws_the_best_score_last():
    image = np.zeros((100, 100, 3), np.uint8)
    same_box = [[10, 30, 90, 90]] * 2
    found = Detections(same_box, [0.9, 0.4], [1, 2], ("circle", "square"))
    drawn = draw_detections(image, found)
    assert tuple(drawn[60, 10]) == class_colour(1) == PALETTE[0]
    assert class_colour(21) == PALETTE[0]


def test_mismatched_inputs_are_refused():
    image = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(ValueError, match="one caption and one colour per box"):
        draw_boxes(image, [[0, 0, 5, 5]], [], [RED])
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        draw_boxes(np.zeros((10, 10), np.uint8), [], [], [])
