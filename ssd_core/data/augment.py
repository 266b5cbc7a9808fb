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
    apply, shift = _draw(seed, prob, -delta, delta)
    return tf.clip_by_value(image + tf.where(apply, shift, 0.0), 0.0, 255.0)


def random_contrast(
    image: tf.Tensor,
    seed: tf.Tensor,
    value_range: tuple[float, float] = CONTRAST_RANGE,
    prob: float = 0.5,
) -> tf.Tensor:
    """Multiply pixel values by a factor in `value_range` (Caffe's contrast: `convertTo(alpha)`)."""
    image = _as_float_image(image)
    apply, factor = _draw(seed, prob, *value_range)
    return tf.clip_by_value(image * tf.where(apply, factor, 1.0), 0.0, 255.0)


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
    seeds = split_seed(seed, 2)
    order = tf.argsort(tf.random.stateless_uniform([3], seeds[1]))
    order = tf.where(_coin(seeds[0], prob), order, tf.range(3))
    return tf.gather(image, order, axis=-1)


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
    seeds = split_seed(seed, 3)
    apply = _coin(seeds[0], prob)
    ratio = tf.where(apply, tf.random.stateless_uniform([], seeds[1], 1.0, max_ratio), 1.0)
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    canvas_h = tf.cast(tf.floor(tf.cast(height, tf.float32) * ratio), tf.int32)
    canvas_w = tf.cast(tf.floor(tf.cast(width, tf.float32) * ratio), tf.int32)
    offsets = tf.random.stateless_uniform([2], seeds[2])
    top = tf.cast(offsets[0] * tf.cast(canvas_h - height + 1, tf.float32), tf.int32)
    left = tf.cast(offsets[1] * tf.cast(canvas_w - width + 1, tf.float32), tf.int32)
    top = tf.minimum(top, canvas_h - height)
    left = tf.minimum(left, canvas_w - width)
    fill = tf.constant(fill, tf.float32, shape=[3])
    # Pad the mean-subtracted image with zeros, so the border takes exactly the fill colour.
    paddings = [[top, canvas_h - height - top], [left, canvas_w - width - left], [0, 0]]
    canvas = tf.cond(apply, lambda: tf.pad(image - fill, paddings) + fill, lambda: image)
    scale = tf.cast(tf.stack([width, height, width, height]), tf.float32)
    shift = tf.cast(tf.stack([left, top, left, top]), tf.float32)
    canvas_scale = tf.cast(tf.stack([canvas_w, canvas_h, canvas_w, canvas_h]), tf.float32)
    return canvas, (boxes * scale + shift) / canvas_scale


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


def crop_to_window(
    image: tf.Tensor, boxes: tf.Tensor, labels: tf.Tensor, window: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Crop to `window` (4,) normalised xyxy, already on whole pixels; keep the boxes whose centre
    lies inside it (Caffe `emit_type: CENTER`), clipped and renormalised to the crop."""
    image = _as_float_image(image)
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    size = tf.cast(tf.stack([width, height, width, height]), tf.float32)
    pixels = tf.cast(tf.round(window * size), tf.int32)
    cropped = image[pixels[1] : pixels[3], pixels[0] : pixels[2]]
    keep = _centres_inside(window[None], boxes)[0]
    boxes, labels = tf.boolean_mask(boxes, keep), tf.boolean_mask(labels, keep)
    extent = tf.concat([window[2:] - window[:2], window[2:] - window[:2]], axis=0)
    origin = tf.concat([window[:2], window[:2]], axis=0)
    boxes = tf.clip_by_value((boxes - origin) / extent, 0.0, 1.0)
    return cropped, boxes, labels


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
    seeds = split_seed(seed, 2)
    modes = tf.constant([2.0, *min_ious], tf.float32)  # 2.0: no IoU reaches it -> whole image
    mode = tf.random.stateless_uniform([], seeds[0], 0, len(min_ious) + 1, dtype=tf.int32)
    min_iou = modes[mode]
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    windows = _snap_to_pixels(_sample_crop_windows(seeds[1], max_trials), height, width)
    has_boxes = tf.shape(boxes)[0] > 0
    iou_ok = tf.reduce_any(pairwise_iou(windows, boxes) >= min_iou, axis=-1)
    centre_ok = tf.reduce_any(_centres_inside(windows, boxes), axis=-1)
    valid = tf.where(has_boxes, iou_ok & centre_ok, tf.fill([max_trials], min_iou <= 1.0))
    whole = tf.constant([0.0, 0.0, 1.0, 1.0])
    window = tf.cond(
        tf.reduce_any(valid),
        lambda: windows[tf.argmax(tf.cast(valid, tf.int32))],
        lambda: whole,
    )
    return crop_to_window(image, boxes, labels, window)


def random_flip(
    image: tf.Tensor, boxes: tf.Tensor, seed: tf.Tensor, prob: float = 0.5
) -> tuple[tf.Tensor, tf.Tensor]:
    """Mirror the image left-right with probability `prob`, and its normalised boxes with it."""
    image = _as_float_image(image)
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    flipped_boxes = tf.stack([1.0 - boxes[:, 2], boxes[:, 1], 1.0 - boxes[:, 0], boxes[:, 3]], -1)
    flip = _coin(seed, prob)
    return (
        tf.cond(flip, lambda: image[:, ::-1], lambda: image),
        tf.cond(flip, lambda: flipped_boxes, lambda: boxes),
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


def random_resize(
    image: tf.Tensor,
    size: tuple[int, int],
    seed: tf.Tensor,
    methods: Sequence[str] = INTERPOLATIONS,
) -> tf.Tensor:
    """Resize to `size` (height, width) with an interpolation drawn uniformly from `methods`."""
    image = _as_float_image(image)
    index = tf.random.stateless_uniform([], seed, 0, len(methods), dtype=tf.int32)
    branches = [lambda m=m: resize(image, size, m) for m in methods]
    resized = tf.switch_case(index, branches)
    return tf.ensure_shape(resized, [size[0], size[1], 3])


# Whole chains -----------------------------------------------------------------------------------


def train_transform(
    image: tf.Tensor,
    boxes: tf.Tensor,
    labels: tf.Tensor,
    seed: tf.Tensor,
    size: tuple[int, int],
    fill: Sequence[float],
    channel_swap_prob: float = 0.5,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The full SSD training augmentation: distort, expand, crop, flip, resize.

    Returns a (size[0], size[1], 3) float32 image 0..255, boxes (M', 4) normalised, labels (M',).
    """
    seeds = split_seed(seed, 5)
    image = photometric_distort(image, seeds[0], channel_swap_prob=channel_swap_prob)
    image, boxes = random_expand(image, boxes, seeds[1], fill=fill)
    image, boxes, labels = random_crop(image, boxes, labels, seeds[2])
    image, boxes = random_flip(image, boxes, seeds[3])
    return random_resize(image, size, seeds[4]), boxes, labels
