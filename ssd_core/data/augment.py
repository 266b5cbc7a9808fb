"""The SSD training augmentation (Liu et al. 2016, section 2.2), as TensorFlow ops for `tf.data`.

Every step is a pure function of its inputs and a stateless seed, so a given seed always gives
the same output (tests rely on it) and the steps run in parallel inside `Dataset.map`.

Conventions shared by every function here:
- `image`: (H, W, 3) float32 RGB, pixel values 0..255 (uint8 input is accepted and converted).
- `boxes`: (M, 4) float32, normalised [xmin, ymin, xmax, ymax] relative to the image they come
  with; M may be 0. Normalised boxes make resizing free and flips/crops one line each.
- `labels`: (M,) int32, carried along and filtered with the boxes.
- `seed`: (2,) int32/int64 tensor for the `tf.random.stateless_*` ops.

The recipe follows the Caffe `ssd_pascal.py` training parameters: photometric distortion,
expansion (zoom out) with probability 0.5 up to 4x onto a mean-coloured canvas, an
IoU-constrained random crop (Caffe's seven batch samplers), horizontal flip with probability
0.5, and a resize with a random interpolation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import tensorflow as tf

from ssd_core.box_ops import pairwise_iou

# Caffe ssd_pascal.py `distort_param`: brightness delta 32, contrast and saturation 0.5..1.5,
# hue delta 18 (OpenCV 8-bit hue units, 0..180 = full circle), each with probability 0.5.
BRIGHTNESS_DELTA = 32.0
CONTRAST_RANGE = (0.5, 1.5)
SATURATION_RANGE = (0.5, 1.5)
HUE_DELTA = 18.0 / 180.0  # fraction of the hue circle
# Caffe ssd_pascal.py `batch_sampler`: the whole image, an unconstrained crop, and crops whose
# IoU with some ground-truth box is at least 0.1 .. 0.9; scale 0.3..1, aspect ratio 0.5..2.
CROP_MIN_IOUS = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9)
CROP_SCALE_RANGE = (0.3, 1.0)
CROP_ASPECT_RANGE = (0.5, 2.0)
CROP_MAX_TRIALS = 50
# Caffe `resize_param.interp_mode`: LINEAR, AREA, NEAREST, CUBIC, LANCZOS4 (lanczos3 in TF).
INTERPOLATIONS = ("bilinear", "area", "nearest", "bicubic", "lanczos3")


def split_seed(seed: tf.Tensor, num: int) -> tf.Tensor:
    """`num` independent (2,) seeds derived from one, as a (num, 2) tensor."""
    return tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=num)


def _coin(seed: tf.Tensor, prob: float) -> tf.Tensor:
    """A scalar bool that is True with probability `prob`."""
    return tf.random.stateless_uniform([], seed) < prob


def _draw(seed: tf.Tensor, prob: float, low: float, high: float) -> tuple[tf.Tensor, tf.Tensor]:
    """(apply?, value): a coin with probability `prob` and a uniform value in [low, high)."""
    seeds = split_seed(seed, 2)
    return _coin(seeds[0], prob), tf.random.stateless_uniform([], seeds[1], low, high)


def _effective(apply: tf.Tensor, value: tf.Tensor, identity: float) -> tf.Tensor:
    """`value` where the step applies, else the value that leaves pixels unchanged."""
    return tf.where(apply, value, identity)


def draw_brightness(
    seed: tf.Tensor, delta: float = BRIGHTNESS_DELTA, prob: float = 0.5
) -> tf.Tensor:
    """The brightness shift (pixel units, 0.0 when the step does not apply)."""
    return _effective(*_draw(seed, prob, -delta, delta), 0.0)


def draw_contrast(
    seed: tf.Tensor, value_range: tuple[float, float] = CONTRAST_RANGE, prob: float = 0.5
) -> tf.Tensor:
    """The contrast factor (1.0 when the step does not apply)."""
    return _effective(*_draw(seed, prob, *value_range), 1.0)


def draw_channel_order(seed: tf.Tensor, prob: float = 0.5) -> tf.Tensor:
    """(3,) int32 channel permutation: random with probability `prob`, else [0, 1, 2]."""
    seeds = split_seed(seed, 2)
    order = tf.argsort(tf.random.stateless_uniform([3], seeds[1]))
    return tf.where(_coin(seeds[0], prob), order, tf.range(3))


class PhotometricDraw(NamedTuple):
    """The random values of one `photometric_distort` (scalars unless said otherwise).

    brightness: shift in pixel units; contrast: factor; contrast_first: bool, the order
    contrast-saturation-hue (else saturation-hue-contrast); saturation: factor; hue: shift as a
    fraction of the hue circle; recolour: bool, saturation or hue applies (the HSV round trip
    runs); channel_order: (3,) int32 permutation. Steps that do not apply hold their identity.
    """

    brightness: tf.Tensor
    contrast: tf.Tensor
    contrast_first: tf.Tensor
    saturation: tf.Tensor
    hue: tf.Tensor
    recolour: tf.Tensor
    channel_order: tf.Tensor


def draw_photometric(seed: tf.Tensor, channel_swap_prob: float = 0.5) -> PhotometricDraw:
    """The draws of `photometric_distort(image, seed, channel_swap_prob)`, without an image."""
    seeds = split_seed(seed, 6)
    apply_sat, saturation = _draw(seeds[3], 0.5, *SATURATION_RANGE)
    apply_hue, hue = _draw(seeds[4], 0.5, -HUE_DELTA, HUE_DELTA)
    return PhotometricDraw(
        brightness=draw_brightness(seeds[0]),
        contrast=draw_contrast(seeds[2]),
        contrast_first=_coin(seeds[1], 0.5),
        saturation=_effective(apply_sat, saturation, 1.0),
        hue=_effective(apply_hue, hue, 0.0),
        recolour=apply_sat | apply_hue,
        channel_order=draw_channel_order(seeds[5], channel_swap_prob),
    )


def _as_float_image(image: tf.Tensor) -> tf.Tensor:
    image = tf.convert_to_tensor(image)
    if image.shape.rank != 3:
        raise ValueError(f"image must have shape (H, W, 3), got {image.shape}")
    return tf.cast(image, tf.float32)


# Photometric distortions ------------------------------------------------------------------------


def random_brightness(
    image: tf.Tensor, seed: tf.Tensor, delta: float = BRIGHTNESS_DELTA, prob: float = 0.5
) -> tf.Tensor:
    """Add one uniform value in [-delta, delta] (pixel units) to every pixel, clip to 0..255."""
    image = _as_float_image(image)
    return tf.clip_by_value(image + draw_brightness(seed, delta, prob), 0.0, 255.0)


def random_contrast(
    image: tf.Tensor,
    seed: tf.Tensor,
    value_range: tuple[float, float] = CONTRAST_RANGE,
    prob: float = 0.5,
) -> tf.Tensor:
    """Multiply pixel values by a factor in `value_range` (Caffe's contrast: `convertTo(alpha)`)."""
    image = _as_float_image(image)
    return tf.clip_by_value(image * draw_contrast(seed, value_range, prob), 0.0, 255.0)


def _adjust_hsv(image: tf.Tensor, saturation: tf.Tensor, hue_shift: tf.Tensor) -> tf.Tensor:
    """Scale saturation and rotate hue in one RGB -> HSV -> RGB round trip (0..255 in and out)."""
    hsv = tf.image.rgb_to_hsv(image / 255.0)
    hue = tf.math.floormod(hsv[..., 0] + hue_shift, 1.0)
    sat = tf.clip_by_value(hsv[..., 1] * saturation, 0.0, 1.0)
    rgb = tf.image.hsv_to_rgb(tf.stack([hue, sat, hsv[..., 2]], axis=-1)) * 255.0
    return tf.clip_by_value(rgb, 0.0, 255.0)


def random_saturation_hue(
    image: tf.Tensor,
    saturation_seed: tf.Tensor,
    hue_seed: tf.Tensor,
    saturation_prob: float = 0.5,
    hue_prob: float = 0.5,
) -> tf.Tensor:
    """`random_saturation` then `random_hue` (the same draws for the same seeds) in a single
    HSV round trip, skipped when neither applies: the colour conversion is the costliest
    photometric op, and Caffe's two orders always run these two back to back."""
    image = _as_float_image(image)
    apply_sat, factor = _draw(saturation_seed, saturation_prob, *SATURATION_RANGE)
    apply_hue, shift = _draw(hue_seed, hue_prob, -HUE_DELTA, HUE_DELTA)
    factor = tf.where(apply_sat, factor, 1.0)
    shift = tf.where(apply_hue, shift, 0.0)
    return tf.cond(apply_sat | apply_hue, lambda: _adjust_hsv(image, factor, shift), lambda: image)


def random_saturation(
    image: tf.Tensor,
    seed: tf.Tensor,
    value_range: tuple[float, float] = SATURATION_RANGE,
    prob: float = 0.5,
) -> tf.Tensor:
    """Scale the HSV saturation by a factor in `value_range`."""
    image = _as_float_image(image)
    apply, factor = _draw(seed, prob, *value_range)
    return tf.cond(apply, lambda: _adjust_hsv(image, factor, 0.0), lambda: image)


def random_hue(
    image: tf.Tensor, seed: tf.Tensor, delta: float = HUE_DELTA, prob: float = 0.5
) -> tf.Tensor:
    """Rotate the HSV hue by a value in [-delta, delta] (fraction of the full circle)."""
    image = _as_float_image(image)
    apply, shift = _draw(seed, prob, -delta, delta)
    return tf.cond(apply, lambda: _adjust_hsv(image, 1.0, shift), lambda: image)


def random_channel_swap(image: tf.Tensor, seed: tf.Tensor, prob: float = 0.5) -> tf.Tensor:
    """Permute the three colour channels at random (Caffe's `random_order_prob`)."""
    image = _as_float_image(image)
    return tf.gather(image, draw_channel_order(seed, prob), axis=-1)


def photometric_distort(
    image: tf.Tensor, seed: tf.Tensor, channel_swap_prob: float = 0.5
) -> tf.Tensor:
    """Caffe's `ApplyDistort`: brightness, then contrast-saturation-hue or saturation-hue-contrast
    (each order with probability 0.5), then a random channel permutation.

    Caffe's ssd_pascal.py sets `random_order_prob` (the channel swap) to 0; the PyTorch ports use
    0.5. `channel_swap_prob` chooses; pass 0.0 for the Caffe recipe.
    """
    seeds = split_seed(seed, 6)
    image = random_brightness(image, seeds[0])

    def contrast_first() -> tf.Tensor:
        out = random_contrast(image, seeds[2])
        return random_saturation_hue(out, seeds[3], seeds[4])

    def contrast_last() -> tf.Tensor:
        out = random_saturation_hue(image, seeds[3], seeds[4])
        return random_contrast(out, seeds[2])

    image = tf.cond(_coin(seeds[1], 0.5), contrast_first, contrast_last)
    return random_channel_swap(image, seeds[5], prob=channel_swap_prob)


# Geometric transforms ---------------------------------------------------------------------------


class ExpandDraw(NamedTuple):
    """Where `random_expand` puts an (H, W) image: on a (height, width) canvas with its top-left
    pixel at (top, left), scalar int32; `applied` (bool) is False when the canvas is the image."""

    applied: tf.Tensor
    height: tf.Tensor
    width: tf.Tensor
    top: tf.Tensor
    left: tf.Tensor


def draw_expand(
    seed: tf.Tensor, height: tf.Tensor, width: tf.Tensor, max_ratio: float = 4.0, prob: float = 0.5
) -> ExpandDraw:
    """The canvas of `random_expand` for an image of `height` x `width` pixels."""
    seeds = split_seed(seed, 3)
    apply = _coin(seeds[0], prob)
    ratio = tf.where(apply, tf.random.stateless_uniform([], seeds[1], 1.0, max_ratio), 1.0)
    canvas_h = tf.cast(tf.floor(tf.cast(height, tf.float32) * ratio), tf.int32)
    canvas_w = tf.cast(tf.floor(tf.cast(width, tf.float32) * ratio), tf.int32)
    offsets = tf.random.stateless_uniform([2], seeds[2])
    top = tf.cast(offsets[0] * tf.cast(canvas_h - height + 1, tf.float32), tf.int32)
    left = tf.cast(offsets[1] * tf.cast(canvas_w - width + 1, tf.float32), tf.int32)
    top, left = tf.minimum(top, canvas_h - height), tf.minimum(left, canvas_w - width)
    return ExpandDraw(apply, canvas_h, canvas_w, top, left)


def expand_boxes(
    boxes: tf.Tensor, canvas: ExpandDraw, height: tf.Tensor, width: tf.Tensor
) -> tf.Tensor:
    """(M, 4) boxes normalised to the (height, width) image -> normalised to the canvas."""
    scale = tf.cast(tf.stack([width, height, width, height]), tf.float32)
    shift = tf.cast(tf.stack([canvas.left, canvas.top, canvas.left, canvas.top]), tf.float32)
    size = tf.stack([canvas.width, canvas.height, canvas.width, canvas.height])
    return (boxes * scale + shift) / tf.cast(size, tf.float32)


def random_expand(
    image: tf.Tensor,
    boxes: tf.Tensor,
    seed: tf.Tensor,
    fill: Sequence[float],
    max_ratio: float = 4.0,
    prob: float = 0.5,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Zoom out: place the image at a random offset on a canvas `ratio` (1..max_ratio) times its
    size, filled with `fill` (RGB, 0..255; the dataset mean in the original recipe).

    Returns the (H', W', 3) canvas and the boxes renormalised to it.
    """
    image = _as_float_image(image)
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    canvas = draw_expand(seed, height, width, max_ratio, prob)
    fill = tf.constant(fill, tf.float32, shape=[3])
    bottom, right = canvas.height - height - canvas.top, canvas.width - width - canvas.left
    paddings = [[canvas.top, bottom], [canvas.left, right], [0, 0]]
    # Pad the mean-subtracted image with zeros, so the border takes exactly the fill colour.
    expanded = tf.cond(canvas.applied, lambda: tf.pad(image - fill, paddings) + fill, lambda: image)
    return expanded, expand_boxes(boxes, canvas, height, width)


def _sample_crop_windows(seed: tf.Tensor, trials: int) -> tf.Tensor:
    """(trials, 4) normalised crop windows: scale 0.3..1, aspect ratio 0.5..2 (Caffe SampleBBox)."""
    seeds = split_seed(seed, 4)
    scale = tf.random.stateless_uniform([trials], seeds[0], *CROP_SCALE_RANGE)
    # Caffe clamps the ratio so that both sides stay <= 1: ratio in [scale^2, 1 / scale^2].
    low = tf.maximum(CROP_ASPECT_RANGE[0], scale**2)
    high = tf.minimum(CROP_ASPECT_RANGE[1], 1.0 / scale**2)
    aspect = low + tf.random.stateless_uniform([trials], seeds[1]) * (high - low)
    crop_w = scale * tf.sqrt(aspect)
    crop_h = scale / tf.sqrt(aspect)
    xmin = tf.random.stateless_uniform([trials], seeds[2]) * (1.0 - crop_w)
    ymin = tf.random.stateless_uniform([trials], seeds[3]) * (1.0 - crop_h)
    return tf.stack([xmin, ymin, xmin + crop_w, ymin + crop_h], axis=-1)


def _snap_to_pixels(windows: tf.Tensor, height: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """Round normalised windows (K, 4) to whole pixels (at least 1x1), returned normalised."""
    size = tf.cast(tf.stack([width, height, width, height]), tf.float32)
    pixels = tf.round(windows * size)
    pixels = tf.concat([pixels[:, :2], tf.maximum(pixels[:, 2:], pixels[:, :2] + 1.0)], axis=-1)
    return tf.minimum(pixels, size) / size


def _centres_inside(windows: tf.Tensor, boxes: tf.Tensor) -> tf.Tensor:
    """(K, M) bool: centre of box m lies inside window k."""
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2.0
    after_start = tf.reduce_all(centres[None] >= windows[:, None, :2], axis=-1)
    before_end = tf.reduce_all(centres[None] <= windows[:, None, 2:], axis=-1)
    return after_start & before_end


def window_pixels(window: tf.Tensor, height: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """(4,) int32 [x0, y0, x1, y1] pixel bounds (end exclusive) of a normalised `window` already
    on whole pixels of a `height` x `width` image."""
    size = tf.cast(tf.stack([width, height, width, height]), tf.float32)
    return tf.cast(tf.round(window * size), tf.int32)


def boxes_in_window(
    boxes: tf.Tensor, labels: tf.Tensor, window: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """The boxes whose centre lies inside `window` (Caffe `emit_type: CENTER`), clipped and
    renormalised to it, and their labels."""
    keep = _centres_inside(window[None], boxes)[0]
    boxes, labels = tf.boolean_mask(boxes, keep), tf.boolean_mask(labels, keep)
    extent = tf.concat([window[2:] - window[:2], window[2:] - window[:2]], axis=0)
    origin = tf.concat([window[:2], window[:2]], axis=0)
    return tf.clip_by_value((boxes - origin) / extent, 0.0, 1.0), labels


def crop_to_window(
    image: tf.Tensor, boxes: tf.Tensor, labels: tf.Tensor, window: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Crop to `window` (4,) normalised xyxy, already on whole pixels; keep the boxes whose centre
    lies inside it (Caffe `emit_type: CENTER`), clipped and renormalised to the crop."""
    image = _as_float_image(image)
    pixels = window_pixels(window, tf.shape(image)[0], tf.shape(image)[1])
    cropped = image[pixels[1] : pixels[3], pixels[0] : pixels[2]]
    return (cropped, *boxes_in_window(boxes, labels, window))


def choose_crop_window(
    boxes: tf.Tensor,
    seed: tf.Tensor,
    height: tf.Tensor,
    width: tf.Tensor,
    min_ious: Sequence[float] = CROP_MIN_IOUS,
    max_trials: int = CROP_MAX_TRIALS,
) -> tf.Tensor:
    """The window of `random_crop` for an image of `height` x `width` pixels with these boxes:
    (4,) normalised xyxy on whole pixels ([0, 0, 1, 1] for the whole image)."""
    seeds = split_seed(seed, 2)
    modes = tf.constant([2.0, *min_ious], tf.float32)  # 2.0: no IoU reaches it -> whole image
    mode = tf.random.stateless_uniform([], seeds[0], 0, len(min_ious) + 1, dtype=tf.int32)
    min_iou = modes[mode]
    windows = _snap_to_pixels(_sample_crop_windows(seeds[1], max_trials), height, width)
    has_boxes = tf.shape(boxes)[0] > 0
    iou_ok = tf.reduce_any(pairwise_iou(windows, boxes) >= min_iou, axis=-1)
    centre_ok = tf.reduce_any(_centres_inside(windows, boxes), axis=-1)
    valid = tf.where(has_boxes, iou_ok & centre_ok, tf.fill([max_trials], min_iou <= 1.0))
    whole = tf.constant([0.0, 0.0, 1.0, 1.0])
    return tf.cond(
        tf.reduce_any(valid),
        lambda: windows[tf.argmax(tf.cast(valid, tf.int32))],
        lambda: whole,
    )


def random_crop(
    image: tf.Tensor,
    boxes: tf.Tensor,
    labels: tf.Tensor,
    seed: tf.Tensor,
    min_ious: Sequence[float] = CROP_MIN_IOUS,
    max_trials: int = CROP_MAX_TRIALS,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The IoU-constrained random crop of SSD.

    One of `len(min_ious) + 1` modes is drawn uniformly: keep the whole image, or a minimum IoU
    from `min_ious` (0.0 = unconstrained). `max_trials` windows are sampled at once; the first
    one whose IoU with some box reaches the minimum and that contains at least one box centre is
    used (an image without boxes accepts any window). If none qualifies, the image is kept.

    Returns the cropped image (h, w, 3), its boxes (M', 4) normalised to the crop, and labels.
    """
    image = _as_float_image(image)
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    labels = tf.convert_to_tensor(labels)
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    window = choose_crop_window(boxes, seed, height, width, min_ious, max_trials)
    return crop_to_window(image, boxes, labels, window)


def flip_boxes(boxes: tf.Tensor) -> tf.Tensor:
    """(M, 4) normalised boxes mirrored left-right."""
    return tf.stack([1.0 - boxes[:, 2], boxes[:, 1], 1.0 - boxes[:, 0], boxes[:, 3]], -1)


def draw_flip(seed: tf.Tensor, prob: float = 0.5) -> tf.Tensor:
    """Scalar bool: `random_flip` mirrors."""
    return _coin(seed, prob)


def random_flip(
    image: tf.Tensor, boxes: tf.Tensor, seed: tf.Tensor, prob: float = 0.5
) -> tuple[tf.Tensor, tf.Tensor]:
    """Mirror the image left-right with probability `prob`, and its normalised boxes with it."""
    image = _as_float_image(image)
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    flip = draw_flip(seed, prob)
    return (
        tf.cond(flip, lambda: tf.reverse(image, [1]), lambda: image),
        tf.cond(flip, lambda: flip_boxes(boxes), lambda: boxes),
    )


def resize(image: tf.Tensor, size: tuple[int, int], method: str = "bilinear") -> tf.Tensor:
    """Resize to `size` (height, width), values clipped to 0..255 (bicubic/lanczos overshoot).

    Normalised boxes need no change.
    """
    image = _as_float_image(image)
    if method not in INTERPOLATIONS:
        raise ValueError(f"method must be one of {INTERPOLATIONS}, got {method!r}")
    resized = tf.image.resize(image, size, method=method, antialias=False)
    return tf.clip_by_value(resized, 0.0, 255.0)


def draw_interpolation(seed: tf.Tensor, count: int = len(INTERPOLATIONS)) -> tf.Tensor:
    """Index (scalar int32) of the interpolation `random_resize` uses, uniform in 0..count-1."""
    return tf.random.stateless_uniform([], seed, 0, count, dtype=tf.int32)


def random_resize(
    image: tf.Tensor,
    size: tuple[int, int],
    seed: tf.Tensor,
    methods: Sequence[str] = INTERPOLATIONS,
) -> tf.Tensor:
    """Resize to `size` (height, width) with an interpolation drawn uniformly from `methods`."""
    return resize_with(image, size, draw_interpolation(seed, len(methods)), methods)


def resize_with(
    image: tf.Tensor,
    size: tuple[int, int],
    method: tf.Tensor,
    methods: Sequence[str] = INTERPOLATIONS,
) -> tf.Tensor:
    """`resize` to `size` (height, width) with `methods[method]` (method: scalar int32 tensor)."""
    image = _as_float_image(image)
    branches = [lambda m=m: resize(image, size, m) for m in methods]
    resized = tf.switch_case(method, branches)
    return tf.ensure_shape(resized, [size[0], size[1], 3])


# Whole chains -----------------------------------------------------------------------------------


def stepwise_train_transform(
    image: tf.Tensor,
    boxes: tf.Tensor,
    labels: tf.Tensor,
    seed: tf.Tensor,
    size: tuple[int, int],
    fill: Sequence[float],
    channel_swap_prob: float = 0.5,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The full SSD training augmentation step by step, as Caffe runs it: distort the whole
    image, expand, crop, flip, resize. This is the definition; `crop_first.train_transform`
    (what the training pipeline runs) computes the same thing faster.

    Returns a (size[0], size[1], 3) float32 image 0..255, boxes (M', 4) normalised, labels (M',).
    """
    seeds = split_seed(seed, 5)
    image = photometric_distort(image, seeds[0], channel_swap_prob=channel_swap_prob)
    image, boxes = random_expand(image, boxes, seeds[1], fill=fill)
    image, boxes, labels = random_crop(image, boxes, labels, seeds[2])
    image, boxes = random_flip(image, boxes, seeds[3])
    return random_resize(image, size, seeds[4]), boxes, labels
