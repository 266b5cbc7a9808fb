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
    method = augment.draw_interpolation(seeds[4])
    return resize_on_fill(distort(part, colour), padding, fill, size, method), boxes, labels


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
        # rgb_to_hsv's hue in sixths of the circle, by the channel holding the maximum: red
        # -1..1, green 1..3, blue 3..5; grey (C = 0) has any hue, its chroma is 0 anyway.
        inverse = tf.math.reciprocal_no_nan(chroma)
        sixths = tf.where(
            red == value,
            inverse * (green - blue),
            tf.where(green == value, inverse * (blue - red) + 2.0, inverse * (red - green) + 4.0),
        )
        # The shift as -3..3 sixths, so the sum (-4..8) is back in 0..6 after one wrap.
        sixths = sixths + (tf.math.floormod(hue_shift + 0.5, 1.0) - 0.5) * 6.0
        sixths = tf.where(sixths < 0.0, sixths + 6.0, sixths)
        sixths = tf.where(sixths >= 6.0, sixths - 6.0, sixths)
        lowest = value - new_chroma

        def channel(share: tf.Tensor) -> tf.Tensor:
            return lowest + new_chroma * tf.clip_by_value(share, 0.0, 1.0)

        # hsv_to_rgb's shares: red |h - 3| - 1, green 2 - |h - 2|, blue 2 - |h - 4|.
        return clip(
            tf.stack(
                [
                    channel(tf.abs(sixths - 3.0) - 1.0),
                    channel(2.0 - tf.abs(sixths - 2.0)),
                    channel(2.0 - tf.abs(sixths - 4.0)),
                ]
            )
        )

    return tf.cond(tf.equal(hue_shift, 0.0), saturate_only, rotate_hue)


def resize_on_fill(
    image: tf.Tensor,
    padding: tf.Tensor,
    fill: Sequence[float],
    size: tuple[int, int],
    method: tf.Tensor,
) -> tf.Tensor:
    """`augment.resize_with` of `image` with `padding` pixels of the colour `fill` around it.

    Args:
        image: (h, w, 3) float32 0..255.
        padding: (2, 2) int32 [[above, below], [left, right]] fill pixels.
        fill: RGB 0..255.
        size: output (height, width).
        method: scalar int32 index into `augment.INTERPOLATIONS`.

    Returns:
        (height, width, 3) float32 0..255.

    Every interpolation is a weighted mean whose weights sum to 1 (nearest, bilinear, Keys
    bicubic, normalised Lanczos-3, area), so resize(fill + d) = fill + resize(d): the image
    minus the fill is padded with zeros (one pass over the canvas, up to 16 times the image) and
    the fill is added to the resized output instead.
    """
    fill_rgb = tf.constant(fill, tf.float32, shape=[3])

    def on_fill() -> tf.Tensor:
        height, width = tf.shape(image)[0], tf.shape(image)[1]
        # Padded as rows of width * 3 values: several times faster than padding (h, w, 3).
        rows = tf.reshape(add_per_channel(image, -fill_rgb), [height, width * 3])
        rows = tf.pad(rows, [padding[0], padding[1] * 3])
        canvas = tf.reshape(rows, [tf.shape(rows)[0], -1, 3])
        return clip(add_per_channel(interpolate(canvas, size, method), fill_rgb))

    no_fill = tf.reduce_all(tf.equal(padding, 0))
    return tf.cond(no_fill, lambda: augment.resize_with(image, size, method), on_fill)


def interpolate(image: tf.Tensor, size: tuple[int, int], method: tf.Tensor) -> tf.Tensor:
    """(h, w, 3) float32 resized to `size` with `augment.INTERPOLATIONS[method]`, no
    antialiasing, not clipped (bicubic and Lanczos overshoot)."""

    def resize(name: str) -> tf.Tensor:
        return tf.image.resize(image, size, method=name, antialias=False)

    resized = tf.switch_case(method, [lambda m=m: resize(m) for m in augment.INTERPOLATIONS])
    return tf.ensure_shape(resized, [size[0], size[1], 3])


def add_per_channel(image: tf.Tensor, values: tf.Tensor) -> tf.Tensor:
    """(h, w, 3) + (3,): as rows of w * 3 values plus one row vector, a broadcast TensorFlow
    runs at memory speed (a (3,) one over (h, w, 3) is several times slower)."""
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    rows = tf.reshape(image, [height, width * 3]) + tf.tile(values, [width])[None]
    return tf.reshape(rows, [height, width, 3])
