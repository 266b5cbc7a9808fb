"""The SSD training augmentation computed crop first: the output of
`augment.stepwise_train_transform` (same seed, same draws, the same pixels up to float rounding)
at a fraction of its cost, for `tf.data`.

The step-by-step chain distorts every pixel of the image, copies it onto an expand canvas up to
4x4 times its size, then crops, flips and resizes. Here the crop window is chosen first (it
depends only on the image size, the boxes and the seed), and only the image pixels inside it
are read, flipped, distorted and padded with the fill colour.

Why this is the same:
- every photometric step maps each pixel's RGB triple to a new one on its own (brightness,
  Caffe's contrast `convertTo(alpha)`, saturation, hue, channel order), with random values drawn
  from the seed, never from the image: distorting a crop equals cropping the distorted image;
- the expand canvas is the distorted image on a constant fill, so the crop of the canvas is the
  crop's part of the image with fill around it where the window reaches past the image;
- a flip permutes pixels: flipping the part and swapping the left and right fill widths equals
  flipping the padded crop;
- the resize (one of five interpolations, no antialiasing) then sees the same (h, w, 3) crop.

`tests/ssd_core/data/test_augment.py` checks both chains against each other over many seeds.
The photometric kernels run on planar (3, h, w) pixels: the HSV round trip reads the channels
as separate planes (TensorFlow's `rgb_to_hsv` kernel reads them strided, several times slower),
and a channel permutation is three contiguous copies.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from ssd_core.data import augment


def train_transform(
    image: tf.Tensor,
    boxes: tf.Tensor,
    labels: tf.Tensor,
    seed: tf.Tensor,
    size: tuple[int, int],
    fill: Sequence[float],
    channel_swap_prob: float = 0.5,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The full SSD training augmentation: distort, expand, crop, flip, resize (see the module
    docstring for how it is computed).

    Args:
        image: (H, W, 3) uint8 (or float 0..255) RGB.
        boxes: (M, 4) float32, normalised [xmin, ymin, xmax, ymax]; labels: (M,) int32.
        seed: (2,) int32/int64 stateless seed.
        size: output (height, width) in pixels.
        fill: the expand canvas colour, RGB 0..255 (the dataset mean).
        channel_swap_prob: see `augment.photometric_distort` (0.0: the Caffe recipe).

    Returns a (size[0], size[1], 3) float32 image 0..255, boxes (M', 4) normalised, labels (M',).
    """
    image = tf.convert_to_tensor(image)
    if image.shape.rank != 3:
        raise ValueError(f"image must have shape (H, W, 3), got {image.shape}")
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    labels = tf.convert_to_tensor(labels)
    seeds = augment.split_seed(seed, 5)
    colour = augment.draw_photometric(seeds[0], channel_swap_prob)
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    canvas = augment.draw_expand(seeds[1], height, width)
    boxes = augment.expand_boxes(boxes, canvas, height, width)
    window = augment.choose_crop_window(boxes, seeds[2], canvas.height, canvas.width)
    boxes, labels = augment.boxes_in_window(boxes, labels, window)
    flip = augment.draw_flip(seeds[3])
    boxes = tf.cond(flip, lambda: augment.flip_boxes(boxes), lambda: boxes)
    crop = augment.window_pixels(window, canvas.height, canvas.width)
    part, padding = image_part_of_crop(image, crop, canvas.top, canvas.left, flip)
    pixels = pad_with_fill(distort(part, colour), padding, fill)
    method = augment.draw_interpolation(seeds[4])
    return augment.resize_with(pixels, size, method), boxes, labels


def image_part_of_crop(
    image: tf.Tensor, crop: tf.Tensor, top: tf.Tensor, left: tf.Tensor, flip: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """The pixels of `image` inside a crop of the canvas it was placed on, and the fill around.

    Args:
        image: (H, W, 3) any dtype, placed on a canvas with its top-left pixel at (top, left).
        crop: (4,) int32 [x0, y0, x1, y1] canvas pixels of the crop (end exclusive).
        top, left: scalar int32 canvas position of the image.
        flip: scalar bool: mirror the crop left-right.

    Returns:
        part: (h, w, 3) the image pixels inside the crop, mirrored if `flip` (h or w is 0 when
            the crop lies on the fill only).
        padding: (2, 2) int32 [[above, below], [left, right]] fill pixels around `part` that
            make up the (y1 - y0, x1 - x0) crop, left and right swapped if `flip`.
    """
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    x0, y0, x1, y1 = crop[0], crop[1], crop[2], crop[3]
    # The crop in image pixels, clamped to the image (an empty range when it misses the image).
    rows = tf.clip_by_value(tf.stack([y0 - top, y1 - top]), 0, height)
    cols = tf.clip_by_value(tf.stack([x0 - left, x1 - left]), 0, width)
    part = image[rows[0] : rows[1], cols[0] : cols[1]]
    above = tf.clip_by_value(top + rows[0] - y0, 0, y1 - y0)
    before = tf.clip_by_value(left + cols[0] - x0, 0, x1 - x0)
    below = (y1 - y0) - above - (rows[1] - rows[0])
    after = (x1 - x0) - before - (cols[1] - cols[0])
    part = tf.cond(flip, lambda: tf.reverse(part, [1]), lambda: part)
    sides = tf.where(flip, tf.stack([after, before]), tf.stack([before, after]))
    return part, tf.stack([tf.stack([above, below]), sides])


def distort(image: tf.Tensor, draw: augment.PhotometricDraw) -> tf.Tensor:
    """`augment.photometric_distort` with the values of `draw`: (h, w, 3) RGB 0..255, any dtype
    -> (h, w, 3) float32 0..255, computed on planes. A step that does not apply is skipped:
    its identity value leaves pixels in 0..255 unchanged (the brightness step's clip still
    runs on float input, which may lie outside)."""
    in_range = image.dtype == tf.uint8
    pixels = tf.cast(tf.transpose(image, [2, 0, 1]), tf.float32)  # (3, h, w)

    def when(applies: tf.Tensor, step, x: tf.Tensor) -> tf.Tensor:
        return tf.cond(applies, lambda: step(x), lambda: x)

    def contrast(x: tf.Tensor) -> tf.Tensor:
        return when(draw.contrast != 1.0, lambda y: clip(y * draw.contrast), x)

    def recolour(x: tf.Tensor) -> tf.Tensor:
        return when(draw.recolour, lambda y: adjust_hsv(y, draw.saturation, draw.hue), x)

    shifts = (draw.brightness != 0.0) | (not in_range)
    pixels = when(shifts, lambda y: clip(y + draw.brightness), pixels)
    pixels = tf.cond(
        draw.contrast_first, lambda: recolour(contrast(pixels)), lambda: contrast(recolour(pixels))
    )
    # Output channel c is plane order[c] (`random_channel_swap`'s gather).
    return tf.transpose(tf.gather(pixels, draw.channel_order), [1, 2, 0])


def clip(pixels: tf.Tensor) -> tf.Tensor:
    return tf.clip_by_value(pixels, 0.0, 255.0)


# hsv_to_rgb per output channel (3, 1, 1): share = clip(sign * |h - centre| + offset, 0, 1).
HSV_CENTRES = np.array([3.0, 2.0, 4.0], np.float32).reshape(3, 1, 1)
HSV_SIGNS = np.array([1.0, -1.0, -1.0], np.float32).reshape(3, 1, 1)
HSV_OFFSETS = np.array([-1.0, 2.0, 2.0], np.float32).reshape(3, 1, 1)


def adjust_hsv(pixels: tf.Tensor, saturation: tf.Tensor, hue_shift: tf.Tensor) -> tf.Tensor:
    """Scale the HSV saturation (then clip it to 0..1) and rotate the hue (`hue_shift`, a
    fraction of the circle) of (3, h, w) RGB planes 0..255, keeping the value V.

    The result of TensorFlow's `rgb_to_hsv` -> adjust -> `hsv_to_rgb` (what
    `augment.random_saturation_hue` runs), in fewer passes: with V the channel maximum and
    C = V - min the chroma, HSV saturation is C / V, so the adjusted chroma is
    C' = V * min(S * factor, 1) = min(C * factor, V), and `hsv_to_rgb` gives every channel
    V - C' + C' * share(hue), its share (0..1) of the chroma a trapezoid over the hue circle.
    Without a hue shift each channel's share is kept: channel' = V - (V - channel) * C' / C.
    """
    red, green, blue = tf.unstack(pixels)
    value = tf.maximum(tf.maximum(red, green), blue)
    chroma = value - tf.minimum(tf.minimum(red, green), blue)
    new_chroma = tf.minimum(chroma * saturation, value)

    def saturate_only() -> tf.Tensor:
        scale = new_chroma * tf.math.reciprocal_no_nan(chroma)  # grey (C = 0) stays grey
        return clip(value - (value - pixels) * scale)

    def rotate_hue() -> tf.Tensor:
        # rgb_to_hsv's hue in sixths of the circle, by the channel holding the maximum.
        inverse = tf.math.reciprocal_no_nan(chroma)  # grey: any hue, its chroma is 0
        sixths = tf.where(
            red == value,
            inverse * (green - blue),
            tf.where(green == value, inverse * (blue - red) + 2.0, inverse * (red - green) + 4.0),
        )
        sixths = tf.math.floormod(sixths + hue_shift * 6.0, 6.0)
        # hsv_to_rgb's shares: red |h - 3| - 1, green 2 - |h - 2|, blue 2 - |h - 4|.
        distance = tf.abs(sixths[None] - HSV_CENTRES)
        shares = tf.clip_by_value(distance * HSV_SIGNS + HSV_OFFSETS, 0.0, 1.0)
        return clip((value - new_chroma)[None] + new_chroma[None] * shares)

    return tf.cond(tf.equal(hue_shift, 0.0), saturate_only, rotate_hue)


def pad_with_fill(image: tf.Tensor, padding: tf.Tensor, fill: Sequence[float]) -> tf.Tensor:
    """(h, w, 3) float32 with `padding` (2, 2) [[above, below], [left, right]] pixels of the
    colour `fill` (RGB 0..255) around it -> (h + above + below, w + left + right, 3)."""
    fill = tf.constant(fill, tf.float32, shape=[3])
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    padded_width = width + padding[1, 0] + padding[1, 1]

    def pad() -> tf.Tensor:
        # As rows of width * 3 values, the fill is one row vector added to every row: a
        # broadcast TensorFlow runs at memory speed (a (3,) one over (H, W, 3) is several
        # times slower). Zero padding of image - fill, plus fill, is the fill colour.
        rows = tf.reshape(image, [height, width * 3]) - tf.tile(fill, [width])[None]
        rows = tf.pad(rows, [padding[0], padding[1] * 3])
        rows = rows + tf.tile(fill, [padded_width])[None]
        return tf.reshape(rows, [height + padding[0, 0] + padding[0, 1], padded_width, 3])

    return tf.cond(tf.reduce_any(padding > 0), pad, lambda: image)
