"""Tests of the SSD augmentation steps: each step alone, then pixel/box consistency of the chain."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from ssd_core.data import augment
from ssd_core.data.crop_first import train_transform
from tests.ssd_core.numpy_boxes import numpy_iou

BACKGROUND = 128.0
# Pure colours, one per label 1..3, so an object's pixels can be found after any geometric step.
COLOURS = {1: (255.0, 0.0, 0.0), 2: (0.0, 255.0, 0.0), 3: (0.0, 0.0, 255.0)}
FILL = (123.0, 117.0, 104.0)


def seed(value: int) -> tf.Tensor:
    return tf.constant([value, 7], tf.int64)


def painted_scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 60x80 grey image with three coloured rectangles and their exact normalised boxes."""
    height, width = 60, 80
    image = np.full((height, width, 3), BACKGROUND, np.float32)
    pixel_boxes = {1: (5, 8, 25, 30), 2: (40, 4, 72, 20), 3: (30, 35, 50, 56)}  # x0, y0, x1, y1
    boxes, labels = [], []
    for label, (x0, y0, x1, y1) in pixel_boxes.items():
        image[y0:y1, x0:x1] = COLOURS[label]
        boxes.append((x0 / width, y0 / height, x1 / width, y1 / height))
        labels.append(label)
    return image, np.array(boxes, np.float32), np.array(labels, np.int32)


def object_mask(image: np.ndarray, label: int) -> np.ndarray:
    """Pixels whose dominant colour is that of `label` (tolerates blending with the grey edges)."""
    channel = label - 1
    others = [c for c in range(3) if c != channel]
    return (image[..., channel] > 160) & np.all(image[..., others] < 100, axis=-1)


def assert_boxes_bound_pixels(image: np.ndarray, boxes: np.ndarray, labels: np.ndarray) -> None:
    """Every box lies in the image and tightly bounds its object's pixels (within 2 pixels)."""
    height, width = image.shape[:2]
    assert np.all(boxes >= 0.0) and np.all(boxes <= 1.0), boxes
    tolerance = 2.0
    for box, label in zip(boxes, labels, strict=True):
        x0, y0, x1, y1 = box * [width, height, width, height]
        ys, xs = np.nonzero(object_mask(image, int(label)))
        if (x1 - x0) < 2 or (y1 - y0) < 2:
            continue  # too small to have surviving pure-colour pixels after a resize
        assert xs.size > 0, f"box {box} of label {label} has no object pixels"
        assert abs(xs.min() - x0) <= tolerance and abs(xs.max() + 1 - x1) <= tolerance, (box, label)
        assert abs(ys.min() - y0) <= tolerance and abs(ys.max() + 1 - y1) <= tolerance, (box, label)


# Photometric ------------------------------------------------------------------------------------


def test_brightness_adds_one_shift_to_every_pixel() -> None:
    image = tf.fill([4, 5, 3], 100.0)
    out = augment.random_brightness(image, seed(1), prob=1.0).numpy()
    shift = out[0, 0, 0] - 100.0
    assert 0.0 < abs(shift) <= augment.BRIGHTNESS_DELTA
    np.testing.assert_allclose(out, 100.0 + shift, atol=1e-4)


def test_contrast_multiplies_pixels_by_one_factor() -> None:
    image = tf.constant(np.linspace(10, 100, 60, dtype=np.float32).reshape(4, 5, 3))
    out = augment.random_contrast(image, seed(2), prob=1.0).numpy()
    factor = out / image.numpy()
    assert factor.min() >= 0.5 and factor.max() <= 1.5
    np.testing.assert_allclose(factor, factor[0, 0, 0], rtol=1e-5)


def test_saturation_and_hue_leave_grey_unchanged() -> None:
    image = tf.fill([3, 3, 3], 90.0)
    sat = augment.random_saturation(image, seed(3), prob=1.0)
    hue = augment.random_hue(image, seed(3), prob=1.0)
    np.testing.assert_allclose(sat.numpy(), 90.0, atol=1e-3)
    np.testing.assert_allclose(hue.numpy(), 90.0, atol=1e-3)


def test_hue_rotates_red_by_at_most_delta() -> None:
    image = tf.constant([[[200.0, 0.0, 0.0]]])
    out = augment.random_hue(image, seed(4), prob=1.0).numpy()
    hue = tf.image.rgb_to_hsv(out / 255.0).numpy()[0, 0, 0]
    distance = min(hue, 1.0 - hue)
    assert 0.0 < distance <= augment.HUE_DELTA + 1e-5


def test_channel_swap_permutes_channels() -> None:
    image = tf.constant([[[10.0, 20.0, 30.0]]])
    seen = set()
    for value in range(20):
        out = augment.random_channel_swap(image, seed(value), prob=1.0).numpy()[0, 0]
        assert sorted(out.tolist()) == [10.0, 20.0, 30.0]
        seen.add(tuple(out.tolist()))
    assert len(seen) > 1


def test_photometric_distort_is_reproducible_and_in_range() -> None:
    image, _, _ = painted_scene()
    first = augment.photometric_distort(image, seed(5)).numpy()
    second = augment.photometric_distort(image, seed(5)).numpy()
    np.testing.assert_array_equal(first, second)
    assert first.shape == image.shape
    assert first.min() >= 0.0 and first.max() <= 255.0


def test_photometric_distort_changes_pixels_for_some_seed() -> None:
    image, _, _ = painted_scene()
    changed = [
        not np.allclose(augment.photometric_distort(image, seed(v)).numpy(), image)
        for v in range(5)
    ]
    assert any(changed)


# Expand -----------------------------------------------------------------------------------------


def test_expand_puts_image_on_fill_canvas() -> None:
    image, boxes, labels = painted_scene()
    canvas, new_boxes = augment.random_expand(image, boxes, seed(6), fill=FILL, prob=1.0)
    canvas = canvas.numpy()
    height, width = canvas.shape[:2]
    assert 60 <= height <= 240 and 80 <= width <= 320
    assert (height, width) != (60, 80)
    fill_pixels = np.all(canvas == FILL, axis=-1)
    assert fill_pixels.sum() == height * width - 60 * 80
    assert_boxes_bound_pixels(canvas, new_boxes.numpy(), labels)


def test_expand_with_probability_zero_is_identity() -> None:
    image, boxes, _ = painted_scene()
    canvas, new_boxes = augment.random_expand(image, boxes, seed(6), fill=FILL, prob=0.0)
    np.testing.assert_array_equal(canvas.numpy(), image)
    np.testing.assert_allclose(new_boxes.numpy(), boxes, atol=1e-6)


# Crop -------------------------------------------------------------------------------------------


def test_crop_to_window_keeps_boxes_by_centre_and_clips() -> None:
    image = np.zeros((10, 10, 3), np.float32)
    boxes = np.array(
        [[0.1, 0.1, 0.4, 0.4], [0.4, 0.4, 0.9, 0.9], [0.7, 0.0, 1.0, 0.2]], np.float32
    )  # centres (0.25, 0.25) in, (0.65, 0.65) in, (0.85, 0.1) out of the window below
    labels = np.array([1, 2, 3], np.int32)
    window = tf.constant([0.2, 0.2, 0.7, 0.7])
    cropped, new_boxes, new_labels = augment.crop_to_window(image, boxes, labels, window)
    assert cropped.shape == (5, 5, 3)
    np.testing.assert_array_equal(new_labels.numpy(), [1, 2])
    # box 1: (0.1-0.2)/0.5 -> 0 clipped, (0.4-0.2)/0.5 = 0.4; box 2: 0.4, 0.4, 1.0 (clipped)
    np.testing.assert_allclose(
        new_boxes.numpy(), [[0.0, 0.0, 0.4, 0.4], [0.4, 0.4, 1.0, 1.0]], atol=1e-6
    )


def test_random_crop_meets_its_iou_constraint() -> None:
    """With only the 0.5 mode, the window overlaps some box by IoU >= 0.5.

    Pixel values encode their own coordinates (R = x, G = y), so the crop tells where it was cut.
    """
    _, boxes, labels = painted_scene()
    ys, xs = np.mgrid[0:60, 0:80].astype(np.float32)
    image = np.stack([xs, ys, np.zeros_like(xs)], axis=-1)
    cropped_any = False
    for value in range(10):
        cropped, _, _ = augment.random_crop(image, boxes, labels, seed(value), min_ious=(0.5,))
        cropped = cropped.numpy()
        if cropped.shape[:2] == image.shape[:2]:
            continue  # whole-image mode or no window qualified
        cropped_any = True
        x0, y0 = cropped[0, 0, :2]
        x1, y1 = cropped[-1, -1, :2] + 1
        window = np.array([x0 / 80, y0 / 60, x1 / 80, y1 / 60])
        assert numpy_iou(window, boxes).max() >= 0.5
    assert cropped_any


def test_random_crop_without_boxes_returns_no_boxes() -> None:
    image = np.full((30, 40, 3), 50.0, np.float32)
    boxes = np.zeros((0, 4), np.float32)
    labels = np.zeros((0,), np.int32)
    for value in range(5):
        cropped, new_boxes, new_labels = augment.random_crop(image, boxes, labels, seed(value))
        assert new_boxes.shape == (0, 4) and new_labels.shape == (0,)
        assert 1 <= cropped.shape[0] <= 30 and 1 <= cropped.shape[1] <= 40


def test_random_crop_keeps_boxes_consistent_with_pixels() -> None:
    image, boxes, labels = painted_scene()
    for value in range(15):
        cropped, new_boxes, new_labels = augment.random_crop(image, boxes, labels, seed(value))
        assert_boxes_bound_pixels(cropped.numpy(), new_boxes.numpy(), new_labels.numpy())


# Flip and resize ------------------------------------------------------------------------------


def test_flip_mirrors_image_and_boxes() -> None:
    image = np.arange(2 * 4 * 3, dtype=np.float32).reshape(2, 4, 3)
    boxes = np.array([[0.1, 0.2, 0.3, 0.9]], np.float32)
    flipped, new_boxes = augment.random_flip(image, boxes, seed(0), prob=1.0)
    np.testing.assert_array_equal(flipped.numpy(), image[:, ::-1])
    np.testing.assert_allclose(new_boxes.numpy(), [[0.7, 0.2, 0.9, 0.9]], atol=1e-6)


def test_resize_rejects_unknown_interpolation() -> None:
    with pytest.raises(ValueError, match="method must be one of"):
        augment.resize(np.zeros((4, 4, 3), np.float32), (2, 2), "cubic-spline")


def test_random_resize_uses_several_interpolations() -> None:
    image = np.random.default_rng(0).uniform(0, 255, (9, 9, 3)).astype(np.float32)
    outputs = {augment.random_resize(image, (5, 7), seed(v)).numpy().tobytes() for v in range(25)}
    assert len(outputs) >= 3
    out = augment.random_resize(image, (5, 7), seed(0)).numpy()
    assert out.shape == (5, 7, 3) and out.min() >= 0.0 and out.max() <= 255.0


# Chains -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", range(40))
def test_geometric_chain_keeps_boxes_on_their_pixels(value: int) -> None:
    """Expand, crop, flip and a random-interpolation resize, each seeded: boxes follow pixels."""
    image, boxes, labels = painted_scene()
    seeds = augment.split_seed(seed(value), 4)
    image_t, boxes_t = augment.random_expand(image, boxes, seeds[0], fill=FILL)
    image_t, boxes_t, labels_t = augment.random_crop(image_t, boxes_t, labels, seeds[1])
    image_t, boxes_t = augment.random_flip(image_t, boxes_t, seeds[2])
    image_t = augment.random_resize(image_t, (60, 80), seeds[3])
    assert_boxes_bound_pixels(image_t.numpy(), boxes_t.numpy(), labels_t.numpy())


@pytest.mark.parametrize("transform", [augment.stepwise_train_transform, train_transform])
def test_train_transform_output_shape_range_and_box_bounds(transform) -> None:
    image, boxes, labels = painted_scene()
    for value in range(5):
        out, new_boxes, new_labels = transform(
            image.astype(np.uint8), boxes, labels, seed(value), (32, 48), FILL
        )
        assert out.shape == (32, 48, 3) and out.dtype == tf.float32
        assert out.numpy().min() >= 0.0 and out.numpy().max() <= 255.0
        assert new_boxes.shape[0] == new_labels.shape[0]
        assert np.all((new_boxes.numpy() >= 0) & (new_boxes.numpy() <= 1))


def test_train_transform_is_reproducible_for_a_seed() -> None:
    image, boxes, labels = painted_scene()
    first = train_transform(image, boxes, labels, seed(3), (32, 48), FILL)
    second = train_transform(image, boxes, labels, seed(3), (32, 48), FILL)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_saturation_hue_in_one_pass_equals_the_two_steps() -> None:
    image = np.random.default_rng(1).uniform(0, 255, (6, 7, 3)).astype(np.float32)
    for value in range(6):
        sat_seed, hue_seed = seed(value), seed(value + 100)
        sequential = augment.random_hue(augment.random_saturation(image, sat_seed), hue_seed)
        combined = augment.random_saturation_hue(image, sat_seed, hue_seed)
        np.testing.assert_allclose(combined.numpy(), sequential.numpy(), atol=0.05)
