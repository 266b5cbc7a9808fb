"""Turn encoded image bytes into the model's input: RGB uint8 at the model's input size.

Accepts JPEG, PNG, BMP and WebP. Applies the EXIF orientation (JPEG APP1, a PNG eXIf chunk
before or after the image data, a WebP EXIF chunk), converts grayscale, palette,
RGBA (alpha dropped) and 16-bit images to 8-bit RGB, and refuses oversized data: the byte
limit before parsing, the pixel limit on the *declared* dimensions before decoding, so a
decompression bomb never allocates its pixels. Runs in a worker pool (Pillow and OpenCV
release the GIL while decoding and resizing).
"""

from __future__ import annotations

import io
import struct
import time
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageMode, ImageOps, UnidentifiedImageError

from service.errors import DeadlineExceededError, ImageTooLargeError, InvalidImageError

FORMATS = ("JPEG", "PNG", "BMP", "WEBP")
# What Pillow raises on malformed data, depending on the format plugin and where it breaks.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError)
_EXIF_ORIENTATION = 0x0112
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
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
class DecodedImage:
    """An image prepared for the model.

    Attributes:
        pixels: (H_in, W_in, 3) uint8 RGB, stretch-resized to the model input size.
        width: original width in pixels, after EXIF orientation.
        height: original height in pixels, after EXIF orientation.
    """

    pixels: np.ndarray
    width: int
    height: int


def decode_image(
    data: bytes, *, max_bytes: int, max_pixels: int, max_decoded_bytes: int | None = None
) -> np.ndarray:
    """Decode to (H, W, 3) uint8 RGB in the EXIF-corrected orientation.

    Args:
        max_decoded_bytes: largest `decoded_size_bytes` of the declared image; None: no limit.
    Raises:
        InvalidImageError: zero bytes, not an image, unsupported format, truncated or corrupt data.
        ImageTooLargeError: more than `max_bytes` bytes, more than `max_pixels` declared pixels
            or more than `max_decoded_bytes` decoded bytes.
    """
    if len(data) == 0:
        raise InvalidImageError("empty image: the request carried zero bytes")
    if len(data) > max_bytes:
        raise ImageTooLargeError(
            f"image is over the limit of {max_bytes} bytes ({len(data)} bytes)"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=FORMATS)
        except UnidentifiedImageError as error:
            raise InvalidImageError(
                f"not a supported image: expected one of {', '.join(FORMATS)}"
            ) from error
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise ImageTooLargeError(f"image declares too many pixels: {error}") from error
        except _DECODE_ERRORS as error:
            raise InvalidImageError(f"corrupt or truncated image header: {error}") from error
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"image declares {width}x{height} = {width * height} pixels, "
            f"the limit is {max_pixels} pixels"
        )
    decoded = decoded_size_bytes(image)
    if max_decoded_bytes is not None and decoded > max_decoded_bytes:
        raise ImageTooLargeError(
            f"image decodes to {decoded} bytes ({width}x{height} {image.mode}), "
            f"the limit is {max_decoded_bytes} bytes"
        )
    try:
        image.load()
        upright = ImageOps.exif_transpose(image, in_place=False) if _rotated(image) else image
    except _DECODE_ERRORS as error:
        raise InvalidImageError(f"corrupt or truncated {image.format} image: {error}") from error
    return _to_rgb8(upright)


def decoded_size_bytes(image: Image.Image) -> int:
    """Bytes the declared image takes decoded: width * height * bytes per pixel of its mode
    (1: gray, palette, bilevel; 2: 16-bit gray; 3: RGB; 4: RGBA, CMYK, 32-bit int or float)."""
    mode = ImageMode.getmode(image.mode)
    bytes_per_pixel = len(mode.bands) * int(mode.typestr[-1])
    return image.size[0] * image.size[1] * bytes_per_pixel


def _rotated(image: Image.Image) -> bool:
    """The EXIF orientation asks for a transpose (exif_transpose copies the image otherwise)."""
    orientation: int = image.getexif().get(_EXIF_ORIENTATION, 1)
    return orientation != 1


def prepare_image(
    data: bytes,
    input_size: tuple[int, int],
    *,
    max_bytes: int,
    max_pixels: int,
    max_decoded_bytes: int | None = None,
    deadline_s: float | None = None,
) -> DecodedImage:
    """Decode and stretch-resize to `input_size` (height, width), as the model was trained.

    Args:
        deadline_s: `time.monotonic()` after which the image is not decoded at all (the
            request already timed out while it waited for a decode worker).
    Raises:
        DeadlineExceededError: `deadline_s` has passed.
        See `decode_image` for the rest.
    """
    if deadline_s is not None and time.monotonic() >= deadline_s:
        raise DeadlineExceededError("request deadline passed before its image was decoded")
    rgb = decode_image(
        data, max_bytes=max_bytes, max_pixels=max_pixels, max_decoded_bytes=max_decoded_bytes
    )
    height, width = rgb.shape[:2]
    return DecodedImage(pixels=resize_to_input(rgb, input_size), width=width, height=height)


def resize_to_input(rgb: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 -> (input_h, input_w, 3) uint8, stretched (bilinear), as trained."""
    target_h, target_w = input_size
    return cv2.resize(rgb, (target_w, target_h), interpolation=cv2.INTER_LINEAR)


def _to_rgb8(image: Image.Image) -> np.ndarray:
    """Any Pillow mode -> (H, W, 3) uint8 RGB."""
    if image.mode in _SIXTEEN_BIT_MODES:
        # Pillow's convert("L") clips 16-bit values at 255; scale the 0..65535 range instead.
        gray16 = np.asarray(image, dtype=np.uint32)
        gray = np.clip(gray16 >> 8, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode == "F":
        gray = np.clip(np.asarray(image), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8)
