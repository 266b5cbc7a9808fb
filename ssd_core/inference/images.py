"""Encoded image bytes to (H, W, 3) uint8 RGB, upright, with limits: the one decoder of the
service, evaluation and offline prediction, so all of them see the same pixels.

Accepts JPEG, PNG, BMP and WebP (Pillow). Applies the EXIF orientation (JPEG APP1, a PNG eXIf
chunk before or after the image data, a WebP EXIF chunk), converts grayscale, palette,
RGBA (alpha dropped) and 16-bit images to 8-bit RGB, and refuses oversized data: the byte
limit before parsing, the pixel and decoded-size limits on the *declared* dimensions before
decoding, so a decompression bomb never allocates its pixels. Pillow releases the GIL while
decoding, so a thread pool decodes in parallel.
"""

from __future__ import annotations

import io
import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageMode, ImageOps, UnidentifiedImageError


class ImageDecodeError(ValueError):
    """Not an image, an unsupported format, truncated or corrupt data, zero bytes."""


class ImageTooLargeError(ImageDecodeError):
    """Over the byte limit, or declared dimensions over the pixel or decoded-size limit."""


FORMATS = ("JPEG", "PNG", "BMP", "WEBP")
# What Pillow raises on malformed data, depending on the format plugin and where it breaks.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError)
_EXIF_ORIENTATION = 0x0112
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
# Local files (datasets, offline prediction) are trusted: limits far above a server's, still
# refusing decompression bombs.
FILE_MAX_BYTES = 512 * 1024 * 1024
FILE_MAX_PIXELS = 400_000_000


def decode_image(
    data: bytes, *, max_bytes: int, max_pixels: int, max_decoded_bytes: int | None = None
) -> np.ndarray:
    """Decode to (H, W, 3) uint8 RGB in the EXIF-corrected orientation.

    Args:
        max_decoded_bytes: largest `decoded_size_bytes` of the declared image; None: no limit.
    Raises:
        ImageDecodeError: zero bytes, not an image, unsupported format, truncated or corrupt data.
        ImageTooLargeError: more than `max_bytes` bytes, more than `max_pixels` declared pixels
            or more than `max_decoded_bytes` decoded bytes.
    """
    if len(data) == 0:
        raise ImageDecodeError("empty image: zero bytes of data")
    if len(data) > max_bytes:
        raise ImageTooLargeError(
            f"image is over the limit of {max_bytes} bytes ({len(data)} bytes)"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=FORMATS)
        except UnidentifiedImageError as error:
            raise ImageDecodeError(
                f"not a supported image: expected one of {', '.join(FORMATS)}"
            ) from error
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise ImageTooLargeError(f"image declares too many pixels: {error}") from error
        except _DECODE_ERRORS as error:
            raise ImageDecodeError(f"corrupt or truncated image header: {error}") from error
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
        raise ImageDecodeError(f"corrupt or truncated {image.format} image: {error}") from error
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


def read_image(
    path: str | Path, *, max_bytes: int = FILE_MAX_BYTES, max_pixels: int = FILE_MAX_PIXELS
) -> np.ndarray:
    """`decode_image` of a file (limits for trusted local files by default).

    Raises:
        OSError: the file cannot be read.
        ImageDecodeError: as `decode_image`, the message naming the file.
    """
    data = Path(path).read_bytes()
    try:
        return decode_image(data, max_bytes=max_bytes, max_pixels=max_pixels)
    except ImageDecodeError as error:
        raise type(error)(f"{path}: {error}") from error
