"""Encoded image bytes to (H, W, 3) uint8 RGB, upright, with limits: the one decoder of the
service, evaluation and offline prediction, so all of them see the same pixels.

Accepts JPEG, PNG, BMP and WebP (Pillow). Applies the EXIF orientation (JPEG APP1, a PNG eXIf
chunk before or after the image data, a WebP EXIF chunk), converts grayscale, palette,
RGBA (alpha dropped) and 16-bit images to 8-bit RGB, and refuses oversized data: the byte
limit before parsing, the pixel and decoded-size limits on the *declared* dimensions before
decoding, so a decompression bomb never allocates its pixels. Pillow releases the GIL while
decoding, so a thread pool decodes in parallel.

`decode_scaled` decodes a JPEG at least twice the size a model needs at a reduced DCT scale
(libjpeg's 1/2, 1/4 or 1/8 IDCT through Pillow's `draft`): the largest reduction whose result
is still at least the needed size, so the resize after it shrinks by less than 2x. Reduced
pixel i covers original pixels [i * r, (i + 1) * r), so the original's geometry is kept
exactly (`DecodedImage.reduction`, `ssd_core.inference.preprocess.resize_image`). The limits
are checked on the declared (full) size first, as for a full decode.
"""

from __future__ import annotations

import io
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass
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
# EXIF orientations that swap width and height (transpose, rotate 90, transverse, rotate 270).
_SWAPPING_ORIENTATIONS = (5, 6, 7, 8)

NeededSize = Callable[[int, int], tuple[int, int]]
"""(height, width) of an upright original -> the (height, width) its decode must keep at least."""


@dataclass(frozen=True)
class DecodedImage:
    """An image decoded for a model.

    Attributes:
        pixels: (h, w, 3) uint8 RGB, upright; 1 / `reduction` of the original's size (rounded
            up) when decoded at a reduced DCT scale.
        width, height: the upright original's size in pixels.
        reduction: original pixels per decoded pixel along each axis: 1, 2, 4 or 8.
    """

    pixels: np.ndarray
    width: int
    height: int
    reduction: int = 1


def decode_image(
    data: bytes, *, max_bytes: int, max_pixels: int, max_decoded_bytes: int | None = None
) -> np.ndarray:
    """Decode to (H, W, 3) uint8 RGB in the EXIF-corrected orientation, at full size.

    Args:
        max_decoded_bytes: largest `decoded_size_bytes` of the declared image; None: no limit.
    Raises:
        ImageDecodeError: zero bytes, not an image, unsupported format, truncated or corrupt data.
        ImageTooLargeError: more than `max_bytes` bytes, more than `max_pixels` declared pixels
            or more than `max_decoded_bytes` decoded bytes.
    """
    return decode_scaled(
        data, max_bytes=max_bytes, max_pixels=max_pixels, max_decoded_bytes=max_decoded_bytes
    ).pixels


def decode_scaled(
    data: bytes,
    *,
    max_bytes: int,
    max_pixels: int,
    max_decoded_bytes: int | None = None,
    needed: NeededSize | None = None,
) -> DecodedImage:
    """Decode to upright (h, w, 3) uint8 RGB, a JPEG at the most reduced DCT scale that keeps
    `needed` (see the module docstring); other formats, and all of them when `needed` is None,
    at full size.

    Args:
        needed: the size the decode must keep at least, of the upright original's size.
        max_decoded_bytes: largest `decoded_size_bytes` of the declared image; None: no limit.
    Raises:
        As `decode_image`; the limits apply to the declared, full size.
    """
    image = _open_checked(data, max_bytes, max_pixels, max_decoded_bytes)
    declared = image.size
    try:
        reduction = _draft(image, needed) if needed is not None else 1
        image.load()
        # Read after the data: a PNG's eXIf chunk may follow it.
        orientation = _orientation(image)
        upright = ImageOps.exif_transpose(image, in_place=False) if orientation != 1 else image
    except _DECODE_ERRORS as error:
        raise ImageDecodeError(f"corrupt or truncated {image.format} image: {error}") from error
    width, height = declared[::-1] if orientation in _SWAPPING_ORIENTATIONS else declared
    return DecodedImage(_to_rgb8(upright), width, height, reduction)


def _draft(image: Image.Image, needed: NeededSize) -> int:
    """Set a JPEG to decode at the most reduced DCT scale that keeps `needed` of its upright
    size; the reduction (1: full size; other formats always)."""
    if image.format != "JPEG":
        return 1
    width, height = image.size
    swapped = _orientation(image) in _SWAPPING_ORIENTATIONS  # a JPEG's EXIF precedes its data
    if swapped:
        width, height = height, width
    need_h, need_w = needed(height, width)
    stored = (need_h, need_w) if swapped else (need_w, need_h)  # (width, height) as stored
    stored_width = image.size[0]
    # Pillow picks the largest of 1/8, 1/4, 1/2 keeping at least `stored` and returns the box
    # of the original in the reduced image, (0, 0, width / scale, height / scale); None: as is.
    drafted = image.draft(None, (max(stored[0], 1), max(stored[1], 1)))
    if drafted is None:
        return 1
    _, box = drafted
    return round(stored_width / box[2])


def _open_checked(
    data: bytes, max_bytes: int, max_pixels: int, max_decoded_bytes: int | None
) -> Image.Image:
    """The image's header, opened and checked against the limits; nothing decoded yet."""
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
    return image


def decoded_size_bytes(image: Image.Image) -> int:
    """Bytes the declared image takes decoded: width * height * bytes per pixel of its mode
    (1: gray, palette, bilevel; 2: 16-bit gray; 3: RGB; 4: RGBA, CMYK, 32-bit int or float)."""
    mode = ImageMode.getmode(image.mode)
    bytes_per_pixel = len(mode.bands) * int(mode.typestr[-1])
    return image.size[0] * image.size[1] * bytes_per_pixel


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation, 1 (upright) when there is none. A PNG's eXIf chunk after the image
    data is read with the data: only a full decode, never drafted, meets it."""
    orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    return orientation if isinstance(orientation, int) else 1


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
