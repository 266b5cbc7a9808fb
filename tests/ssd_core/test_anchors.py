"""Anchors against published counts, hand-computed boxes and a Caffe PriorBox reference loop."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ssd_core.anchors import generate_anchors
from ssd_core.backbones import feature_map_sizes
from ssd_core.config import SSDConfig

SQRT2 = math.sqrt(2.0)


@pytest.fixture(scope="module")
def ssd300_anchors() -> np.ndarray:
    return generate_anchors(SSDConfig.preset("ssd300_voc"))


@pytest.fixture(scope="module")
def ssd512_anchors() -> np.ndarray:
    return generate_anchors(SSDConfig.preset("ssd512_voc"))


def _box(cx: float, cy: float, width: float, height: float, image: float) -> list[float]:
    """Normalised [xmin, ymin, xmax, ymax] of a box given in pixels (centre and size)."""
    return [
        (cx - width / 2) / image,
        (cy - height / 2) / image,
        (cx + width / 2) / image,
        (cy + height / 2) / image,
    ]


def test_ssd300_has_8732_anchors(ssd300_anchors):
    assert ssd300_anchors.shape == (8732, 4)
    assert ssd300_anchors.dtype == np.float32


def test_ssd512_has_24564_anchors(ssd512_anchors):
    assert ssd512_anchors.shape == (24564, 4)


def test_ssd300_per_layer_anchor_counts():
    # 38*38*4, 19*19*6, 10*10*6, 5*5*6, 3*3*4, 1*1*4 (SSD paper table / Caffe prototxt).
    config = SSDConfig.preset("ssd300_voc")
    sizes = zip(feature_map_sizes(config), config.boxes_per_location, strict=True)
    counts = [h * w * boxes for (h, w), boxes in sizes]
    assert counts == [5776, 2166, 600, 150, 36, 4]
    assert len(generate_anchors(config)) == sum(counts)


def test_coco_presets_have_the_anchor_counts_of_their_voc_twins():
    assert len(generate_anchors(SSDConfig.preset("ssd300_coco"))) == 8732
    assert len(generate_anchors(SSDConfig.preset("ssd512_coco"))) == 24564


def test_ssd7_has_11692_anchors():
    # 37*60 + 18*30 + 9*15 + 4*7 cells, 4 boxes each.
    assert len(generate_anchors(SSDConfig.preset("ssd7"))) == (2220 + 540 + 135 + 28) * 4


# SSD300 (conv4_3: 38x38, step 8, min 30, max 60; fc7: 19x19, step 16, min 60, max 111;
# conv9_2: 1x1, step 300, min 264, max 315).


def test_ssd300_first_anchor_is_the_min_size_box_at_the_first_cell(ssd300_anchors):
    expected = [-11 / 300, -11 / 300, 19 / 300, 19 / 300]  # centre (4, 4), 30 x 30 pixels
    np.testing.assert_allclose(ssd300_anchors[0], expected, atol=1e-6)


def test_ssd300_second_anchor_is_the_sqrt_min_max_box(ssd300_anchors):
    side = math.sqrt(30 * 60)  # 42.43 pixels
    np.testing.assert_allclose(ssd300_anchors[1], _box(4, 4, side, side, 300), atol=1e-6)


def test_ssd300_third_anchor_is_the_aspect_ratio_2_box(ssd300_anchors):
    np.testing.assert_allclose(
        ssd300_anchors[2], _box(4, 4, 30 * SQRT2, 30 / SQRT2, 300), atol=1e-6
    )


def test_ssd300_fc7_aspect_ratio_2_box_at_row_3_column_5(ssd300_anchors):
    index = 5776 + (3 * 19 + 5) * 6 + 2  # after conv4_3; cell (3, 5); box 2 (ar 2)
    expected = _box(5.5 * 16, 3.5 * 16, 60 * SQRT2, 60 / SQRT2, 300)
    np.testing.assert_allclose(ssd300_anchors[index], expected, atol=1e-6)


def test_ssd300_last_anchor_is_the_aspect_ratio_half_box_of_conv9_2(ssd300_anchors):
    expected = _box(150, 150, 264 / SQRT2, 264 * SQRT2, 300)  # ar 1/2: w = s/sqrt2, h = s*sqrt2
    np.testing.assert_allclose(ssd300_anchors[-1], expected, atol=1e-6)


# SSD512: Caffe truncates sizes to integers: 0.07 * 512 = 35.84 -> 35, 76.8 -> 76, 307.2 -> 307,
# 384, 460.8 -> 460, 537.6 -> 537.


def test_ssd512_first_anchor_uses_the_truncated_min_size_35(ssd512_anchors):
    np.testing.assert_allclose(ssd512_anchors[0], _box(4, 4, 35, 35, 512), atol=1e-6)


def test_ssd512_sqrt_box_uses_truncated_sizes_35_and_76(ssd512_anchors):
    side = math.sqrt(35 * 76)
    np.testing.assert_allclose(ssd512_anchors[1], _box(4, 4, side, side, 512), atol=1e-6)


def test_ssd512_conv8_2_aspect_ratio_3_box_at_row_2_column_1(ssd512_anchors):
    # Offsets: 64*64*4 + 32*32*6 + 16*16*6 + 8*8*6 = 24448; conv8_2 is 4x4, step 128, min 307.
    index = 24448 + (2 * 4 + 1) * 6 + 4  # box 4 is ar 3 (order 1, sqrt, 2, 1/2, 3, 1/3)
    expected = _box(1.5 * 128, 2.5 * 128, 307 * math.sqrt(3), 307 / math.sqrt(3), 512)
    np.testing.assert_allclose(ssd512_anchors[index], expected, atol=1e-6)


def test_ssd512_last_anchor_is_the_aspect_ratio_half_box_of_conv10_2(ssd512_anchors):
    expected = _box(256, 256, 460 / SQRT2, 460 * SQRT2, 512)
    np.testing.assert_allclose(ssd512_anchors[-1], expected, atol=1e-6)


def _caffe_prior_boxes(
    image: int,
    feature_sizes: list[int],
    steps: list[int],
    min_sizes: list[int],
    max_sizes: list[int],
    ratios: list[list[float]],
) -> np.ndarray:
    """The loop of Caffe's PriorBox Forward_cpu (square image, flip, no clip), layer by layer."""
    boxes = []
    for size, step, min_size, max_size, extra in zip(
        feature_sizes, steps, min_sizes, max_sizes, ratios, strict=True
    ):
        for h in range(size):
            for w in range(size):
                cx, cy = (w + 0.5) * step, (h + 0.5) * step
                boxes.append(_box(cx, cy, min_size, min_size, image))
                side = math.sqrt(min_size * max_size)
                boxes.append(_box(cx, cy, side, side, image))
                for ar in extra:
                    for r in (ar, 1.0 / ar):  # flip: true
                        boxes.append(
                            _box(cx, cy, min_size * math.sqrt(r), min_size / math.sqrt(r), image)
                        )
    return np.asarray(boxes)


def test_ssd300_anchors_equal_the_caffe_prior_box_loop(ssd300_anchors):
    reference = _caffe_prior_boxes(
        300,
        [38, 19, 10, 5, 3, 1],
        [8, 16, 32, 64, 100, 300],
        [30, 60, 111, 162, 213, 264],  # ssd_pascal.py min_sizes
        [60, 111, 162, 213, 264, 315],
        [[2], [2, 3], [2, 3], [2, 3], [2], [2]],
    )
    np.testing.assert_allclose(ssd300_anchors, reference, atol=1e-6)


def test_ssd512_anchors_equal_the_caffe_prior_box_loop(ssd512_anchors):
    reference = _caffe_prior_boxes(
        512,
        [64, 32, 16, 8, 4, 2, 1],
        [8, 16, 32, 64, 128, 256, 512],
        [35, 76, 153, 230, 307, 384, 460],  # ssd_pascal_512.py sizes after int()
        [76, 153, 230, 307, 384, 460, 537],
        [[2], [2, 3], [2, 3], [2, 3], [2, 3], [2], [2]],
    )
    np.testing.assert_allclose(ssd512_anchors, reference, atol=1e-6)


def test_clip_keeps_anchors_inside_the_image():
    anchors = generate_anchors(SSDConfig.preset("ssd300_voc", clip=True))
    assert anchors.min() == 0.0
    assert anchors.max() == 1.0
