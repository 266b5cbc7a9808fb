"""A request's image bytes to the model input, with the service's limits and deadline around
the one inference path (`ssd_core.inference`: decoding, the model's resize policy).

`ssd_core`'s image errors become the service's here (400 not an image, 413 too large), so the
HTTP and gRPC mappings of `service.errors` apply. Runs in a worker pool (Pillow and OpenCV
release the GIL while decoding and resizing).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from service.errors import DeadlineExceededError, ImageTooLargeError, InvalidImageError
from ssd_core.inference import Placement, Predictor
from ssd_core.inference import images as inference_images

# Room for the other fields of a request around its images (protobuf or JSON framing).
_ENVELOPE_BYTES = 1024 * 1024


def max_message_bytes(max_image_bytes: int) -> int:
    """The largest request that carries images, bytes: a gRPC message (`ssd.v1` and the Open
    Inference Protocol) or an OIP HTTP inference body.

    Twice the image limit (at least 1 MiB more), so an image somewhat over `max_image_bytes`
    still reaches the service and gets an answer naming the limit, and one OIP request may
    carry several images up to that total. Over it, grpc itself refuses the message
    (RESOURCE_EXHAUSTED, "Received message larger than max") and HTTP answers 413.
    """
    return max(2 * max_image_bytes, max_image_bytes + _ENVELOPE_BYTES)


@dataclass(frozen=True)
class PreparedImage:
    """An upload ready for the model.

    Attributes:
        pixels: (input_h, input_w, 3) uint8 RGB, resized by the model's resize policy.
        placement: where the upright original lies in `pixels` (its size, scale, padding).
    """

    pixels: np.ndarray
    placement: Placement

    @property
    def width(self) -> int:
        """Original width in pixels, after EXIF orientation."""
        return self.placement.width

    @property
    def height(self) -> int:
        """Original height in pixels, after EXIF orientation."""
        return self.placement.height


def decode_image(
    data: bytes, *, max_bytes: int, max_pixels: int, max_decoded_bytes: int | None = None
) -> np.ndarray:
    """`ssd_core.inference.decode_image` (upright (H, W, 3) uint8 RGB) with service errors.

    Raises:
        InvalidImageError: zero bytes, not an image, unsupported format, truncated or corrupt.
        ImageTooLargeError: over the byte, declared-pixel or decoded-size limit.
    """
    try:
        return inference_images.decode_image(
            data, max_bytes=max_bytes, max_pixels=max_pixels, max_decoded_bytes=max_decoded_bytes
        )
    except inference_images.ImageTooLargeError as error:
        raise ImageTooLargeError(str(error)) from error
    except inference_images.ImageDecodeError as error:
        raise InvalidImageError(str(error)) from error


def prepare_image(
    data: bytes,
    predictor: Predictor,
    *,
    max_bytes: int,
    max_pixels: int,
    max_decoded_bytes: int | None = None,
    deadline_s: float | None = None,
) -> PreparedImage:
    """Decode and resize an upload for `predictor`'s model, as evaluation does
    (`Predictor.prepare`: a large JPEG decoded at a reduced DCT scale).

    Args:
        deadline_s: `time.monotonic()` after which the image is not decoded at all (the
            request already timed out while it waited for a decode worker).
    Raises:
        DeadlineExceededError: `deadline_s` has passed.
        See `decode_image` for the rest.
    """
    if deadline_s is not None and time.monotonic() >= deadline_s:
        raise DeadlineExceededError("request deadline passed before its image was decoded")
    try:
        pixels, placement = predictor.prepare(
            data, max_bytes=max_bytes, max_pixels=max_pixels, max_decoded_bytes=max_decoded_bytes
        )
    except inference_images.ImageTooLargeError as error:
        raise ImageTooLargeError(str(error)) from error
    except inference_images.ImageDecodeError as error:
        raise InvalidImageError(str(error)) from error
    return PreparedImage(pixels, placement)
