"""The crop-first training chain equals the step-by-step one (same seeds, same draws, the same
pixels up to float rounding), and its pieces on hand-computed cases."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
import tensorflow as tf

from ssd_core.data import augment, crop_first
from ssd_core.data.shapes import render_scene

FILL = (123.68, 116.78, 103.94)  # the VGG mean: non-integer, so a fill pixel is recognisable
SIZE = (48, 64)
# Pixel values 0..255: what float rounding in the HSV formulas and a resize of them can move.
PIXEL_TOLERANCE = 1e-3


def scene(index: int, height: int, width: int, empty: bool = False):
    """A rendered shapes scene: (H, W, 3) uint8, (M, 4) normalised boxes, (M,) labels."""
    rendered = render_scene(
        np.random.default_rng(index), height, width, empty_probability=1.0 if empty else 0.0
    )
    boxes = (rendered.boxes - [1.0, 1.0, 0.0, 0.0]) / [width, height, width, height]
    return rendered.image, boxes.astype(np.float32), rendered.labels


def branches(seed: tf.Tensor, height: int, width: int, boxes: np.ndarray) -> set[str]:
    """Which branches of the chain a seed takes (so the comparison below provably covers all)."""
    seeds = augment.split_seed(seed, 5)
    colour = augment.draw_photometric(seeds[0])
    canvas = augment.draw_expand(seeds[1], height, width)
    canvas_boxes = augment.expand_boxes(boxes, canvas, height, width)
    window = augment.choose_crop_window(canvas_boxes, seeds[2], canvas.height, canvas.width)
    crop = augment.window_pixels(window, canvas.height, canvas.width).numpy()
    part, padding = crop_first.image_part_of_crop(
        tf.zeros([height, width, 3]), crop, canvas.top, canvas.left, tf.constant(False)
    )
    taken = {
        f"interpolation {int(augment.draw_interpolation(seeds[4]))}",
        "expand" if bool(canvas.applied) else "no expand",
        "whole window" if np.array_equal(window, [0, 0, 1, 1]) else "cropped window",
        "flip" if bool(augment.draw_flip(seeds[3])) else "no flip",
        "hue" if float(colour.hue) != 0.0 else "no hue",
        "saturation only" if bool(colour.recolour) and float(colour.hue) == 0.0 else "",
        "contrast first" if bool(colour.contrast_first) else "contrast last",
        "channel swap" if list(colour.channel_order.numpy()) != [0, 1, 2] else "",
    }
    if np.any(padding.numpy() > 0):
        taken.add("fill around")
    if tf.size(part) == 0:
        taken.add("fill only")
    return taken


def assert_same_output(stepwise, fast) -> None:
    np.testing.assert_array_equal(fast[2].numpy(), stepwise[2].numpy())
    np.testing.assert_allclose(fast[1].numpy(), stepwise[1].numpy(), atol=1e-6)
    assert fast[0].shape == stepwise[0].shape
    np.testing.assert_allclose(fast[0].numpy(), stepwise[0].numpy(), atol=PIXEL_TOLERANCE)


def test_crop_first_chain_equals_the_stepwise_chain_in_every_branch() -> None:
    covered: set[str] = set()
    for index in range(120):
        empty = index % 6 == 5  # no boxes: any window, sometimes one on the fill only
        image, boxes, labels = scene(index, 60 + index % 7, 80 + index % 5, empty)
        seed = tf.constant([index, 11], tf.int64)
        stepwise = augment.stepwise_train_transform(image, boxes, labels, seed, SIZE, FILL)
        fast = crop_first.train_transform(image, boxes, labels, seed, SIZE, FILL)
        assert_same_output(stepwise, fast)
        covered |= branches(seed, *image.shape[:2], boxes)
    expected = {f"interpolation {i}" for i in range(len(augment.INTERPOLATIONS))} | {
        "expand", "no expand", "whole window", "cropped window", "flip", "no flip", "hue",
        "no hue", "saturation only", "contrast first", "contrast last", "channel swap",
        "fill around", "fill only",
    }  # fmt: skip
    assert expected <= covered, expected - covered


def test_crop_first_equals_stepwise_on_float_images_and_the_caffe_channel_order() -> None:
    for index in range(12):
        image, boxes, labels = scene(index, 50, 70)
        image = image.astype(np.float32) + 0.25  # values between the uint8 ones
        seed = tf.constant([index, 5], tf.int64)
        args = (image, boxes, labels, seed, SIZE, FILL, 0.0)
        assert_same_output(
            augment.stepwise_train_transform(*args), crop_first.train_transform(*args)
        )


def test_image_part_of_crop_on_a_hand_placed_image() -> None:
    # A 4x5 image at (top 2, left 3) on its canvas; the crop spans canvas x 1..6, y 3..9.
    image = tf.reshape(tf.range(4 * 5 * 3), [4, 5, 3])
    crop = tf.constant([1, 3, 6, 9])  # x0, y0, x1, y1
    part, padding = crop_first.image_part_of_crop(image, crop, 2, 3, tf.constant(False))
    # Image rows 1..3 (canvas 3..5), columns 0..2 (canvas 3..5); fill 0 above, 3 below (rows
    # 6..8), 2 left (canvas x 1, 2), 0 right.
    np.testing.assert_array_equal(part.numpy(), image.numpy()[1:4, 0:3])
    np.testing.assert_array_equal(padding.numpy(), [[0, 3], [2, 0]])
    flipped, padding = crop_first.image_part_of_crop(image, crop, 2, 3, tf.constant(True))
    np.testing.assert_array_equal(flipped.numpy(), image.numpy()[1:4, 0:3][:, ::-1])
    np.testing.assert_array_equal(padding.numpy(), [[0, 3], [0, 2]])


def test_image_part_of_a_crop_on_the_fill_only_is_empty() -> None:
    image = tf.ones([4, 5, 3])
    part, padding = crop_first.image_part_of_crop(image, tf.constant([0, 0, 2, 2]), 3, 3, False)
    assert part.shape == (0, 0, 3)
    assert padding.numpy()[0].sum() == 2 and padding.numpy()[1].sum() == 2


@pytest.mark.parametrize("method", range(len(augment.INTERPOLATIONS)))
def test_resize_on_fill_equals_resizing_the_filled_canvas(method: int) -> None:
    image = np.random.default_rng(method).uniform(0, 255, (20, 30, 3)).astype(np.float32)
    canvas = np.empty((20 + 9, 30 + 12, 3), np.float32)
    canvas[:] = FILL
    canvas[4:24, 7:37] = image  # 4 rows above, 5 below, 7 columns left, 5 right
    padding = tf.constant([[4, 5], [7, 5]])
    out = crop_first.resize_on_fill(image, padding, FILL, (16, 21), tf.constant(method))
    expected = augment.resize(canvas, (16, 21), augment.INTERPOLATIONS[method])
    np.testing.assert_allclose(out.numpy(), expected.numpy(), atol=PIXEL_TOLERANCE)


def test_add_per_channel_adds_each_channel_its_value() -> None:
    image = tf.zeros([2, 3, 3])
    out = crop_first.add_per_channel(image, tf.constant([1.0, 2.0, 3.0])).numpy()
    np.testing.assert_array_equal(out, np.broadcast_to([1.0, 2.0, 3.0], (2, 3, 3)))


@pytest.mark.parametrize(
    "saturation, hue", [(1.4, 0.0), (0.6, 0.0), (1.3, 0.07), (0.8, -0.1), (1.0, 0.45), (2.0, -0.8)]
)
def test_adjust_hsv_matches_colorsys(saturation: float, hue: float) -> None:
    rng = np.random.default_rng(3)
    rgb = rng.uniform(0, 255, (40, 3))
    rgb[:6] = [[0, 0, 0], [255, 255, 255], [90, 90, 90], [255, 0, 0], [0, 200, 0], [10, 0, 250]]
    expected = []
    for r, g, b in rgb / 255.0:
        h, s, v = colorsys.rgb_to_hsv(r, g, b)
        expected.append(colorsys.hsv_to_rgb((h + hue) % 1.0, min(s * saturation, 1.0), v))
    planes = tf.constant(rgb.T.reshape(3, 8, 5), tf.float32)
    out = crop_first.adjust_hsv(planes, tf.constant(saturation), tf.constant(hue))
    out = out.numpy().reshape(3, -1).T
    np.testing.assert_allclose(out, np.array(expected) * 255.0, atol=2e-3)
