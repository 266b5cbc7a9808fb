"""Annotated-image answers: which format a request asked for, and the image with its boxes.

`POST /detect?render=true`, or an `Accept` header that prefers `image/png` or `image/jpeg` to
JSON, gets the original image (full resolution, EXIF orientation applied, so upright) with the
detections drawn by `ssd_core.visualize.draw_detections`. JSON stays the default.
"""

from __future__ import annotations

from service.images import decode_image
from ssd_core.inference import Detections
from ssd_core.visualize import JPEG, PNG, draw_detections, encode_image

RENDER_TYPES = (PNG, JPEG)
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
    detections: Detections,
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
    return encode_image(draw_detections(rgb, detections), media_type)
