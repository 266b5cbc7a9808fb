"""Synthetic photo-like scenes of coloured shapes, the dataset training and tests use here.

Each scene has a textured, noisy background (a smooth colour field, sometimes stripes and
low-contrast clutter lines) and 0..`max_objects` shapes of the classes
`ssd_core.presets.SHAPES_CLASSES` = circle, square, triangle, star, ring, drawn with OpenCV
(no anti-aliasing, so the annotation is exactly the drawn pixels). Objects:

- diameters log-uniform from 20 px to 75% of the shorter image side, plus some tiny ones
  (8..15 px) which are marked `difficult`, as is anything whose box is under 16 px;
- a colour that contrasts with the background under it, with a soft lighting gradient;
- some are cut by the image border (`truncated`; at least half of each object stays visible);
- later objects may overlap earlier ones, but a placement that would hide more than 40% of an
  earlier object is rejected; an object more than 60% hidden would be marked `difficult`.

Boxes follow Pascal VOC: 1-based pixel indices of the first and last covered pixel,
`[first_col + 1, first_row + 1, last_col + 1, last_row + 1]`; an occluded object's box is the
box of its whole drawn shape, a truncated object's box is its part inside the image.
Scenes are deterministic for a seed: image `i` of a split uses `default_rng([seed, split, i])`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ssd_core.data.voc import LABELS_FILE, write_voc_annotation
from ssd_core.presets import SHAPES_CLASSES

MIN_DIAMETER_PX = 20
TINY_DIAMETER_PX = (8, 16)
DIFFICULT_BELOW_PX = 16  # box longer side below this -> difficult
MAX_DIAMETER_FRACTION = 0.75
TINY_PROBABILITY = 0.1
EMPTY_PROBABILITY = 0.07
BORDER_PROBABILITY = 0.15  # chance an object centre may fall anywhere, so it can be cut
MIN_VISIBLE_IN_IMAGE = 0.5
MAX_HIDDEN_ON_PLACEMENT = 0.4
DIFFICULT_HIDDEN = 0.6
MIN_COLOUR_DISTANCE = 110.0  # Euclidean RGB distance between object and background


@dataclass(frozen=True, eq=False)
class Scene:
    """One rendered scene.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        background: (H, W, 3) uint8 RGB, the same image with no objects drawn (same noise).
        boxes: (M, 4) float32, VOC pixel boxes [xmin, ymin, xmax, ymax] (1-based, inclusive).
        labels: (M,) int32, label i+1 is `SHAPES_CLASSES[i]`.
        difficult: (M,) bool. truncated: (M,) bool.
        visible_fraction: (M,) float32, share of each object's in-image pixels not covered by
            later objects (1.0 for an unoccluded object).
    """

    image: np.ndarray
    background: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray
    truncated: np.ndarray
    visible_fraction: np.ndarray


# Shape masks ---------------------------------------------------------------------------------


def _polygon(radius: float, angle: float, radii: list[float], centre: int) -> np.ndarray:
    """Vertices at the given radii, evenly spaced in angle, as (K, 1, 2) int32 patch coords."""
    k = len(radii)
    theta = angle + np.arange(k) * 2 * math.pi / k - math.pi / 2
    r = np.asarray(radii) * radius
    points = np.stack([centre + r * np.cos(theta), centre + r * np.sin(theta)], axis=1)
    return np.round(points).astype(np.int32).reshape(-1, 1, 2)


def shape_mask(kind: str, diameter: float, rng: np.random.Generator) -> np.ndarray:
    """A (S, S) bool patch with the shape drawn around its centre pixel `S // 2`."""
    radius = diameter / 2
    size = 2 * math.ceil(radius) + 3
    centre = size // 2
    mask = np.zeros((size, size), np.uint8)
    angle = float(rng.uniform(0, 2 * math.pi))
    r_int = max(1, round(radius))
    if kind == "circle":
        cv2.circle(mask, (centre, centre), r_int, 1, -1)
    elif kind == "ring":
        cv2.circle(mask, (centre, centre), r_int, 1, -1)
        cv2.circle(mask, (centre, centre), max(1, round(radius * rng.uniform(0.45, 0.65))), 0, -1)
    elif kind == "square":
        tilt = math.pi / 4 + float(rng.uniform(-0.4, 0.4))  # corners at 45 deg +- ~23 deg
        cv2.fillPoly(mask, [_polygon(radius, tilt, [1.0] * 4, centre)], 1)
    elif kind == "triangle":
        cv2.fillPoly(mask, [_polygon(radius, angle, [1.0] * 3, centre)], 1)
    elif kind == "star":
        inner = float(rng.uniform(0.4, 0.5))
        cv2.fillPoly(mask, [_polygon(radius, angle, [1.0, inner] * 5, centre)], 1)
    else:
        raise ValueError(f"unknown shape kind {kind!r}; expected one of {SHAPES_CLASSES}")
    return mask.astype(bool)


# Backgrounds ---------------------------------------------------------------------------------


def _smooth_field(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    grid = rng.uniform(0, 255, size=(int(rng.integers(2, 6)), int(rng.integers(2, 8)), 3))
    spread = rng.uniform(0.2, 0.8)  # how much of the colour range the field spans
    centre = rng.uniform(40, 215, size=3)
    grid = centre + (grid - 127.5) * spread
    return cv2.resize(grid.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)


def _add_stripes(rng: np.random.Generator, image: np.ndarray) -> None:
    height, width = image.shape[:2]
    theta = rng.uniform(0, math.pi)
    period = rng.uniform(8, 60)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    wave = np.sin((xx * math.cos(theta) + yy * math.sin(theta)) * 2 * math.pi / period)
    image += (rng.uniform(8, 25) * wave)[..., None] * rng.uniform(0.5, 1.0, size=3)


def _add_clutter(rng: np.random.Generator, image: np.ndarray) -> None:
    height, width = image.shape[:2]
    for _ in range(int(rng.integers(2, 8))):
        p1 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        p2 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        shift = rng.uniform(-30, 30, size=3)
        colour = np.clip(image[p1[1], p1[0]] + shift, 0, 255).tolist()
        cv2.line(image, p1, p2, colour, int(rng.integers(1, 4)))


def render_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W, 3) float32 RGB textured background, before sensor noise."""
    image = _smooth_field(rng, height, width)
    if rng.random() < 0.5:
        _add_stripes(rng, image)
    if rng.random() < 0.5:
        _add_clutter(rng, image)
    return image


# Objects -------------------------------------------------------------------------------------


def _pick_colour(rng: np.random.Generator, under: np.ndarray) -> np.ndarray:
    reference = under.reshape(-1, 3).mean(axis=0)
    best, best_distance = None, -1.0
    for _ in range(16):
        colour = rng.uniform(0, 255, size=3)
        distance = float(np.linalg.norm(colour - reference))
        if distance >= MIN_COLOUR_DISTANCE:
            return colour
        if distance > best_distance:
            best, best_distance = colour, distance
    assert best is not None  # 16 tries, the first is always the best so far
    return best


def _sample_diameter(rng: np.random.Generator, height: int, width: int) -> float:
    if rng.random() < TINY_PROBABILITY:
        return float(rng.uniform(*TINY_DIAMETER_PX))
    high = max(MIN_DIAMETER_PX + 1, MAX_DIAMETER_FRACTION * min(height, width))
    return float(math.exp(rng.uniform(math.log(MIN_DIAMETER_PX), math.log(high))))


def _paste(patch: np.ndarray, top: int, left: int, height: int, width: int) -> np.ndarray:
    """The patch placed at (top, left) in an (H, W) bool canvas, clipped to the canvas."""
    canvas = np.zeros((height, width), bool)
    s = patch.shape[0]
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + s, height), min(left + s, width)
    if y1 > y0 and x1 > x0:
        canvas[y0:y1, x0:x1] = patch[y0 - top : y1 - top, x0 - left : x1 - left]
    return canvas


def _place(
    rng: np.random.Generator,
    patch: np.ndarray,
    height: int,
    width: int,
    visible_masks: list[np.ndarray],
    in_image_areas: list[int],
) -> tuple[np.ndarray, bool] | None:
    """(H, W) bool mask of the patch at an acceptable random position and whether the border
    cuts it, or None after 10 rejected tries (too little inside, or hides an earlier object)."""
    s = patch.shape[0]
    half = s // 2
    full_area = int(patch.sum())
    for _ in range(10):
        inside_ok = s <= min(height, width) and rng.random() >= BORDER_PROBABILITY
        if inside_ok:
            cy, cx = int(rng.integers(half, height - half)), int(rng.integers(half, width - half))
        else:
            cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
        mask = _paste(patch, cy - half, cx - half, height, width)
        if mask.sum() < MIN_VISIBLE_IN_IMAGE * full_area:
            continue
        hides_too_much = any(
            1 - (visible & ~mask).sum() / area > MAX_HIDDEN_ON_PLACEMENT
            for visible, area in zip(visible_masks, in_image_areas, strict=True)
        )
        if not hides_too_much:
            return mask, bool(mask.sum() < full_area)
    return None


def _shade(rng: np.random.Generator, colour: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Object colour with a soft linear lighting gradient, (K, 3) float32 for the mask pixels."""
    ys, xs = np.nonzero(mask)
    direction = rng.normal(size=2)
    direction /= np.linalg.norm(direction) + 1e-9
    coord = (xs - xs.mean()) * direction[0] + (ys - ys.mean()) * direction[1]
    coord = coord / (np.abs(coord).max() + 1e-9)
    gain = 1 + rng.uniform(0.0, 0.15) * coord
    return (colour[None, :] * gain[:, None]).astype(np.float32)


def _voc_box(mask: np.ndarray) -> list[float]:
    rows, cols = np.any(mask, axis=1), np.any(mask, axis=0)
    r = np.flatnonzero(rows)
    c = np.flatnonzero(cols)
    return [c[0] + 1.0, r[0] + 1.0, c[-1] + 1.0, r[-1] + 1.0]


def render_scene(
    rng: np.random.Generator,
    height: int = 300,
    width: int = 480,
    max_objects: int = 6,
    empty_probability: float = EMPTY_PROBABILITY,
) -> Scene:
    """Render one random scene in memory.

    Args:
        rng: the random generator (the scene is a pure function of its state).
        height, width: image size in pixels (default: the ssd7 input, 300 x 480).
        max_objects: upper bound on objects; the count is uniform in 1..max_objects.
        empty_probability: chance of a scene with no objects.

    Returns:
        A `Scene` (image, background, VOC pixel boxes, labels, difficult, truncated).
    """
    if height < 32 or width < 32:
        raise ValueError(f"scene must be at least 32 x 32 pixels, got {height} x {width}")
    base = render_background(rng, height, width)
    image = base.copy()
    count = 0 if rng.random() < empty_probability else int(rng.integers(1, max_objects + 1))
    masks: list[np.ndarray] = []
    areas: list[int] = []
    boxes: list[list[float]] = []
    labels: list[int] = []
    truncated: list[bool] = []
    for _ in range(count):
        label = int(rng.integers(0, len(SHAPES_CLASSES)))
        patch = shape_mask(SHAPES_CLASSES[label], _sample_diameter(rng, height, width), rng)
        placed = _place(rng, patch, height, width, masks, areas)
        if placed is None:
            continue
        mask, is_truncated = placed
        image[mask] = _shade(rng, _pick_colour(rng, image[mask]), mask)
        masks = [m & ~mask for m in masks]  # later objects cover earlier ones
        masks.append(mask)
        areas.append(int(mask.sum()))
        boxes.append(_voc_box(mask))  # whole drawn shape, before any later occlusion
        labels.append(label + 1)
        truncated.append(is_truncated)
    noise = _sensor_noise(rng, height, width)
    visible = np.array([m.sum() / a for m, a in zip(masks, areas, strict=True)], np.float32)
    box_array = np.asarray(boxes, np.float32).reshape(-1, 4)
    return Scene(
        image=_finish(image, noise),
        background=_finish(base, noise),
        boxes=box_array,
        labels=np.asarray(labels, np.int32),
        difficult=_is_difficult(box_array, visible),
        truncated=np.asarray(truncated, bool),
        visible_fraction=visible,
    )


def _sensor_noise(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W, 3) float32 zero-mean grain, per-channel strength, standard deviation 2..10.

    The difference of two uniform bytes (triangular, std 255 / sqrt(6)) looks like Gaussian
    grain and is several times cheaper to draw than normal samples.
    """
    pair = np.frombuffer(rng.bytes(2 * height * width), np.uint8).reshape(2, height, width, 1)
    grain = pair[0].astype(np.float32) - pair[1]
    sigma = rng.uniform(2, 10) * rng.uniform(0.7, 1.0, size=3) * math.sqrt(6) / 255
    return grain * sigma.astype(np.float32)


def _finish(image: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Add sensor noise and quantise (round, saturate) to uint8."""
    out = image + noise
    np.clip(out, 0, 255, out=out)
    out += 0.5
    return out.astype(np.uint8)


def _is_difficult(boxes: np.ndarray, visible_fraction: np.ndarray) -> np.ndarray:
    """(M,) bool: box longer side (VOC inclusive pixels) is tiny, or the object mostly hidden."""
    sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) + 1
    return (sides < DIFFICULT_BELOW_PX) | (visible_fraction < 1 - DIFFICULT_HIDDEN)


SPLITS = ("train", "test")


def write_shapes_dataset(
    out: str | Path,
    num_train: int,
    num_test: int,
    seed: int = 0,
    height: int = 300,
    width: int = 480,
    max_objects: int = 6,
    jpeg_quality: int = 95,
) -> Path:
    """Write a Pascal VOC layout dataset of `render_scene` images.

    Layout: `JPEGImages/<id>.jpg`, `Annotations/<id>.xml`, `ImageSets/Main/{train,test}.txt`
    and `labels.txt` (the class order, `SHAPES_CLASSES`). Ids are `train_000000`,
    `test_000000`, ...; image `i` of a split depends only on (seed, split, i), so the test set
    does not change when the train size does.

    Returns:
        The dataset root `out`.
    """
    if num_train < 0 or num_test < 0:
        raise ValueError(f"image counts must be >= 0, got train={num_train}, test={num_test}")
    root = Path(out)
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / LABELS_FILE).write_text("\n".join(SHAPES_CLASSES) + "\n")
    for split_index, (split, count) in enumerate(zip(SPLITS, (num_train, num_test), strict=True)):
        ids = [f"{split}_{i:06d}" for i in range(count)]
        for i, image_id in enumerate(ids):
            rng = np.random.default_rng([seed, split_index, i])
            scene = render_scene(rng, height, width, max_objects)
            _write_scene(root, image_id, scene, jpeg_quality)
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return root


def _write_scene(root: Path, image_id: str, scene: Scene, jpeg_quality: int) -> None:
    filename = f"{image_id}.jpg"
    bgr = cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(
        str(root / "JPEGImages" / filename), bgr, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]
    ):
        raise OSError(f"could not write {root / 'JPEGImages' / filename}")
    objects = [
        (SHAPES_CLASSES[label - 1], box, bool(diff), bool(trunc))
        for box, label, diff, trunc in zip(
            scene.boxes, scene.labels, scene.difficult, scene.truncated, strict=True
        )
    ]
    height, width = scene.image.shape[:2]
    write_voc_annotation(root / "Annotations" / f"{image_id}.xml", filename, width, height, objects)
