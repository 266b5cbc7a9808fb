"""Annotated-image answers: which format a request asked for, and the image with its boxes.

`POST /detect?render=true`, or an `Accept` header that prefers `image/png` or `image/jpeg` to
JSON, gets the original image (full resolution, EXIF orientation applied, so upright) with the
detections drawn by `ssd_core.visualize.draw_detections`. JSON stays the default.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from service.detector import Detection
from service.images import decode_image
from ssd_core.visualize import draw_detections

PNG, JPEG = "image/png", "image/jpeg"
RENDER_TYPES = (PNG, JPEG)
JPEG_QUALITY = 90
PNG_COMPRESSION = 3  # zlib level: 1-3 cost a few ms per megapixel, 9 several times that
_JSON_RANGES = ("application/json", "application/*", "*/*")
_JPEG_MAGIC = b"\xff\xd8\xff"


def response_type(render: bool | None, accept: str | None, data: bytes) -> str | None:
    """The image media type to answer with, or None for JSON.

    Args:
        render: the `render` query parameter: True forces an image, False forces JSON, None
            lets `accept` decide.
        accept: the request's `Accept` header (media ranges with optional q-values).
        data: the uploaded image; without a more precise choice a JPEG upload is answered
            with a JPEG and anything else with a PNG.
    """
    if render is False:
        return None
    same_as_input = JPEG if data.startswith(_JPEG_MAGIC) else PNG
    for media_range in _ranges_by_preference(accept or ""):
        if media_range in RENDER_TYPES:
            return media_range
        if media_range == "image/*":
            return same_as_input
        if media_range in _JSON_RANGES and render is None:
            return None
    return same_as_input if render else None


def _ranges_by_preference(accept: str) -> list[str]:
    """The media ranges of an Accept header with q > 0, highest q first (ties keep order)."""
    ranges: list[tuple[float, int, str]] = []
    for index, item in enumerate(accept.split(",")):
        media_range, *params = (part.strip() for part in item.split(";"))
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if media_range and quality > 0:
            ranges.append((-quality, index, media_range.lower()))
    return [media_range for _, _, media_range in sorted(ranges)]


def render_detections(
    data: bytes,
    detections: Sequence[Detection],
    media_type: str,
    *,
    max_bytes: int,
    max_pixels: int,
) -> bytes:
    """The uploaded image, decoded upright at full size, with `detections` drawn, encoded.

    The request path keeps only the model-sized copy, so the original is decoded a second
    time here, by the same `decode_image`; only rendering requests pay for it. Blocking:
    run it off the event loop.

    Args:
        data: the image bytes the detections were computed on (already decoded once, so valid).
        detections: boxes in that image's pixels.
        media_type: `image/png` or `image/jpeg`.
    """
    rgb = decode_image(data, max_bytes=max_bytes, max_pixels=max_pixels)
    return encode_image(annotate(rgb, detections), media_type)


def annotate(rgb: np.ndarray, detections: Sequence[Detection]) -> np.ndarray:
    """(H, W, 3) uint8 RGB with `detections` (boxes in its pixels) drawn; a new array."""
    return draw_detections(
        rgb,
        np.array([d.box for d in detections], dtype=np.float64).reshape(-1, 4),
        [d.class_id for d in detections],
        [d.label for d in detections],
        [d.score for d in detections],
    )


def encode_image(rgb: np.ndarray, media_type: str) -> bytes:
    """(H, W, 3) uint8 RGB -> PNG or JPEG (quality `JPEG_QUALITY`) bytes."""
    if media_type == PNG:
        extension, options = ".png", [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION]
    elif media_type == JPEG:
        extension, options = ".jpg", [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    else:
        raise ValueError(f"can encode {' or '.join(RENDER_TYPES)}, not {media_type!r}")
    ok, encoded = cv2.imencode(extension, np.ascontiguousarray(rgb[..., ::-1]), options)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {rgb.shape} image as {media_type}")
    return bytes(encoded.tobytes())
