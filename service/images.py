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
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from service.errors import ImageTooLargeError, InvalidImageError

FORMATS = ("JPEG", "PNG", "BMP", "WEBP")
# What Pillow raises on malformed data, depending on the format plugin and where it breaks.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError)
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


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


def decode_image(data: bytes, *, max_bytes: int, max_pixels: int) -> np.ndarray:
    """Decode to (H, W, 3) uint8 RGB in the EXIF-corrected orientation.

    Raises:
        InvalidImageError: zero bytes, not an image, unsupported format, truncated or corrupt data.
        ImageTooLargeError: more than `max_bytes` bytes or more than `max_pixels` declared pixels.
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
    try:
        image.load()
        upright = ImageOps.exif_transpose(image)
    except _DECODE_ERRORS as error:
        raise InvalidImageError(f"corrupt or truncated {image.format} image: {error}") from error
    return _to_rgb8(upright)


def prepare_image(
    data: bytes, input_size: tuple[int, int], *, max_bytes: int, max_pixels: int
) -> DecodedImage:
    """Decode and stretch-resize to `input_size` (height, width), as the model was trained."""
    rgb = decode_image(data, max_bytes=max_bytes, max_pixels=max_pixels)
    height, width = rgb.shape[:2]
    target_h, target_w = input_size
    pixels = cv2.resize(rgb, (target_w, target_h), interpolation=cv2.INTER_LINEAR)
    return DecodedImage(pixels=pixels, width=width, height=height)


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
