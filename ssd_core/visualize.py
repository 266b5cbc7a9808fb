"""Draw labelled boxes on an image: the one drawing routine of the project.

The service's annotated responses (`POST /detect?render=true`), the evaluation gallery and
`scripts/predict.py` all call `draw_boxes` (or `draw_detections`), so a box looks the same
everywhere; `encode_image` writes their PNG / JPEG files and answers. Pure NumPy + OpenCV
(Hershey fonts are built into OpenCV: no font files, works offline).

Geometry, which `outline_rect` and `label_rect` expose so callers and tests can tell exactly
which pixels a drawing changes:

- a box [xmin, ymin, xmax, ymax] in pixels covers columns floor(xmin) .. ceil(xmax) - 1 and
  rows floor(ymin) .. ceil(ymax) - 1 (clipped to the image, at least one pixel wide); its
  outline is the band of `thickness_px` pixels just inside that rectangle;
- its caption sits on a filled rectangle of the box colour, above the box's top-left corner
  when there is room, else just inside the top edge, shifted left to stay inside the image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from ssd_core.inference import Detections

# Distinct, saturated colours (RGB) that read on photos; label k gets PALETTE[(k - 1) % 20].
# The browser demo (service/static/demo.js) carries the same list.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
    (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128),
)  # fmt: skip
FONT = cv2.FONT_HERSHEY_SIMPLEX
_DARK_TEXT, _LIGHT_TEXT = (0, 0, 0), (255, 255, 255)

Rect = tuple[int, int, int, int]  # (x0, y0, x1, y1) pixels, x1 / y1 exclusive


@dataclass(frozen=True)
class BoxStyle:
    """Line and text sizes, in pixels and OpenCV font-scale units."""

    thickness_px: int
    font_scale: float
    text_thickness_px: int
    padding_px: int


def style_for(height: int, width: int) -> BoxStyle:
    """Sizes that scale with the image: 2 px lines on a 512 x 512 photo, 1 px below 450 px."""
    thickness = max(1, round(min(height, width) / 300))
    return BoxStyle(
        thickness_px=thickness,
        font_scale=max(0.4, 0.3 * thickness),
        text_thickness_px=max(1, thickness // 2),
        padding_px=max(1, thickness),
    )


def detection_caption(name: str, score: float) -> str:
    """The caption of a detection: "circle 0.87"."""
    return f"{name} {score:.2f}"


def class_colour(label: int) -> tuple[int, int, int]:
    """The RGB colour of model label `label` (1-based; 0, background, is never drawn)."""
    return PALETTE[(int(label) - 1) % len(PALETTE)]


def outline_rect(box: Sequence[float], height: int, width: int) -> Rect:
    """The pixel rectangle (exclusive ends) whose inner band is the outline of `box`.

    Args:
        box: [xmin, ymin, xmax, ymax] in pixels of an image `height` x `width`.
    """
    x0 = min(max(math.floor(box[0]), 0), width - 1)
    y0 = min(max(math.floor(box[1]), 0), height - 1)
    x1 = min(max(math.ceil(box[2]), x0 + 1), width)
    y1 = min(max(math.ceil(box[3]), y0 + 1), height)
    return x0, y0, x1, y1


def label_rect(
    box: Sequence[float], caption: str, height: int, width: int, style: BoxStyle
) -> Rect:
    """The filled rectangle (exclusive ends, clipped to the image) behind `caption`."""
    rect_w, rect_h, _ = _caption_size(caption, style)
    x0, y0, _, _ = outline_rect(box, height, width)
    left = max(0, min(x0, width - rect_w))
    top = y0 - rect_h if y0 >= rect_h else y0
    return left, top, min(left + rect_w, width), min(top + rect_h, height)


def _caption_size(caption: str, style: BoxStyle) -> tuple[int, int, int]:
    """(width, height) of the caption's rectangle and the height of its text above the
    baseline, pixels."""
    (text_w, text_h), baseline = cv2.getTextSize(
        caption, FONT, style.font_scale, style.text_thickness_px
    )
    return text_w + 2 * style.padding_px, text_h + baseline + 2 * style.padding_px, text_h


def draw_boxes(
    image: np.ndarray,
    boxes: np.ndarray | Sequence[Sequence[float]],
    captions: Sequence[str],
    colours: Sequence[tuple[int, int, int]],
    style: BoxStyle | None = None,
) -> np.ndarray:
    """A copy of `image` with each box's outline and caption drawn; `image` is not modified.

    Args:
        image: (H, W, 3) uint8, RGB (or BGR if `colours` are BGR).
        boxes: (N, 4) [xmin, ymin, xmax, ymax] in pixels of `image`.
        captions: N texts (ASCII; Hershey fonts have no other glyphs), "" for no caption.
        colours: N colours in the channel order of `image`.
        style: sizes; default `style_for(H, W)`.

    Returns:
        (H, W, 3) uint8. Outlines are drawn first and captions over them, in the given order,
        so pass the most important box last.

    Raises:
        ValueError: wrong image shape or dtype, or boxes / captions / colours of unequal length.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if not len(boxes) == len(captions) == len(colours):
        raise ValueError(
            f"got {len(boxes)} boxes, {len(captions)} captions and {len(colours)} colours; "
            "pass one caption and one colour per box"
        )
    height, width = image.shape[:2]
    style = style or style_for(height, width)
    canvas = image.copy()
    for box, colour in zip(boxes.tolist(), colours, strict=True):
        _draw_outline(canvas, outline_rect(box, height, width), colour, style.thickness_px)
    for box, caption, colour in zip(boxes.tolist(), captions, colours, strict=True):
        if caption:
            rect = label_rect(box, caption, height, width, style)
            _draw_caption(canvas, rect, caption, colour, style)
    return canvas


def draw_detections(image: np.ndarray, detections: Detections) -> np.ndarray:
    """`draw_boxes` with class colours and "name 0.87" captions, the best score drawn on top.

    Args:
        image: (H, W, 3) uint8 RGB.
        detections: the image's `ssd_core.inference.Detections` (boxes in its pixels).
    """
    order = np.argsort(detections.scores.astype(np.float64), kind="stable")
    return draw_boxes(
        image,
        detections.boxes.astype(np.float64)[order],
        [detection_caption(detections.names[i], float(detections.scores[i])) for i in order],
        [class_colour(int(detections.labels[i])) for i in order],
    )


# Media types `encode_image` writes, and their OpenCV settings.
PNG, JPEG = "image/png", "image/jpeg"
JPEG_QUALITY = 90
PNG_COMPRESSION = 3  # zlib level: 1-3 cost a few ms per megapixel, 9 several times that


def encode_image(rgb: np.ndarray, media_type: str) -> bytes:
    """(H, W, 3) uint8 RGB -> PNG or JPEG (quality `JPEG_QUALITY`) bytes."""
    if media_type == PNG:
        extension, options = ".png", [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION]
    elif media_type == JPEG:
        extension, options = ".jpg", [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    else:
        raise ValueError(f"can encode {PNG} or {JPEG}, not {media_type!r}")
    ok, encoded = cv2.imencode(extension, np.ascontiguousarray(rgb[..., ::-1]), options)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {rgb.shape} image as {media_type}")
    return bytes(encoded.tobytes())


def _draw_outline(
    canvas: np.ndarray, rect: Rect, colour: tuple[int, int, int], thickness: int
) -> None:
    x0, y0, x1, y1 = rect
    canvas[y0 : min(y0 + thickness, y1), x0:x1] = colour
    canvas[max(y1 - thickness, y0) : y1, x0:x1] = colour
    canvas[y0:y1, x0 : min(x0 + thickness, x1)] = colour
    canvas[y0:y1, max(x1 - thickness, x0) : x1] = colour


def _draw_caption(
    canvas: np.ndarray, rect: Rect, caption: str, colour: tuple[int, int, int], style: BoxStyle
) -> None:
    """Text rendered into its own full-size patch, then the part inside `rect` is pasted, so
    not one pixel lands outside `rect`."""
    rect_w, rect_h, text_h = _caption_size(caption, style)
    patch = np.empty((rect_h, rect_w, 3), np.uint8)
    patch[:] = colour
    luminance = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    text = _DARK_TEXT if luminance > 140 else _LIGHT_TEXT
    origin = (style.padding_px, style.padding_px + text_h)
    cv2.putText(
        patch, caption, origin, FONT, style.font_scale, text, style.text_thickness_px, cv2.LINE_AA
    )
    x0, y0, x1, y1 = rect
    canvas[y0:y1, x0:x1] = patch[: y1 - y0, : x1 - x0]
