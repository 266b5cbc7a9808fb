"""An image of any size to the model input, and the model's boxes back to the image's pixels:
the one resize and the one normalised-to-pixel mapping of inference (the role of
torchvision's `GeneralizedRCNNTransform` resize / `postprocess`).

Two policies, named by `SSDConfig.resize`:

- `"stretch"` (the Caffe/SSD default, what the published models were trained with): both
  sides scaled to the input size, aspect ratio not kept;
- `"letterbox"`: one scale for both sides (the largest that fits), the image centred, the
  rest filled with the config's `pixel_mean` (which the network's normalisation maps to 0).

Both resample with OpenCV's bilinear `cv2.resize` on uint8 RGB. A `Placement` records where
the original lies in the input, `input_px = original_px * scale + offset` per axis, with the
scale of the size actually resized to (rounded), so `Placement.to_original` is the exact
inverse of what `resize_image` did: box edges are continuous coordinates (pixel `i` spans
[i, i + 1)), which `cv2.resize`'s half-pixel-centred sampling scales exactly.

An image decoded at a reduced DCT scale (`ssd_core.inference.images.decode_scaled`: decoded
pixel i covers original pixels [i * r, (i + 1) * r)) is resized the same way and its
`Placement` maps to the *original's* pixels (`resize_image(..., reduction=r, original_size=)`).
`prepare` is the whole image path: encoded bytes to model input and `Placement`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from ssd_core.config import RESIZE_POLICIES
from ssd_core.inference.images import (
    FILE_MAX_BYTES,
    FILE_MAX_PIXELS,
    DecodedImage,
    ImageDecodeError,
    decode_scaled,
)


@dataclass(frozen=True)
class Placement:
    """Where an original image lies in the model input (pixels, `x_in = x * scale + offset`).

    Attributes:
        width, height: the original image's size in pixels.
        input_size: (height, width) of the model input in pixels.
        scale_x, scale_y: input pixels per original pixel.
        offset_x, offset_y: input pixels left of / above the image (letterbox padding).
    """

    width: int
    height: int
    input_size: tuple[int, int]
    scale_x: float
    scale_y: float
    offset_x: float = 0.0
    offset_y: float = 0.0

    def to_original(self, boxes: np.ndarray) -> np.ndarray:
        """(n, 4) normalised model-input [xmin, ymin, xmax, ymax] -> (n, 4) float32 original
        pixels, clipped to [0, width] x [0, height]."""
        input_h, input_w = self.input_size
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        scale = np.array([self.scale_x, self.scale_y] * 2)
        offset = np.array([self.offset_x, self.offset_y] * 2)
        pixels = (boxes * np.array([input_w, input_h] * 2) - offset) / scale
        limit = np.array([self.width, self.height] * 2, np.float64)
        return np.clip(pixels, 0.0, limit).astype(np.float32)


def place(height: int, width: int, input_size: tuple[int, int], policy: str) -> Placement:
    """The `Placement` of a `height` x `width` image in `input_size` under `policy`.

    Raises:
        ValueError: an unknown policy or an empty image.
    """
    if policy not in RESIZE_POLICIES:
        raise ValueError(f"resize policy must be one of {RESIZE_POLICIES}, got {policy!r}")
    if height < 1 or width < 1:
        raise ValueError(f"image must have at least one pixel, got {width}x{height}")
    input_h, input_w = input_size
    if policy == "stretch":
        return Placement(width, height, (input_h, input_w), input_w / width, input_h / height)
    scale = min(input_w / width, input_h / height)
    resized_w = min(input_w, max(1, round(width * scale)))
    resized_h = min(input_h, max(1, round(height * scale)))
    return Placement(
        width,
        height,
        (input_h, input_w),
        resized_w / width,
        resized_h / height,
        float((input_w - resized_w) // 2),
        float((input_h - resized_h) // 2),
    )


def resized_size(
    height: int, width: int, input_size: tuple[int, int], policy: str
) -> tuple[int, int]:
    """(height, width) a `height` x `width` image is resized to under `policy` (the input size
    for `stretch`, the fitted size for `letterbox`): what a reduced decode must keep."""
    placement = place(height, width, input_size, policy)
    return round(height * placement.scale_y), round(width * placement.scale_x)


def resize_image(
    rgb: np.ndarray,
    input_size: tuple[int, int],
    policy: str,
    fill: tuple[float, float, float],
    *,
    reduction: int = 1,
    original_size: tuple[int, int] | None = None,
) -> tuple[np.ndarray, Placement]:
    """(H, W, 3) uint8 RGB -> ((input_h, input_w, 3) uint8 RGB model input, its `Placement`).

    Args:
        rgb: the image, any size.
        input_size: (height, width) of the model input.
        policy: `"stretch"` or `"letterbox"` (see the module docstring).
        fill: RGB 0..255 of the letterbox padding (the config's `pixel_mean`).
        reduction: `rgb` is an original decoded at 1 / `reduction` scale (`DecodedImage`);
            the `Placement` maps to the original's pixels.
        original_size: (height, width) of that original; None: `rgb`'s own size.
    """
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
    height, width = rgb.shape[:2]
    placement = place(height, width, input_size, policy)
    resized_w = round(width * placement.scale_x)
    resized_h = round(height * placement.scale_y)
    resized = cv2.resize(rgb, (resized_w, resized_h), interpolation=cv2.INTER_LINEAR)
    if reduction != 1 or original_size is not None:
        original_h, original_w = original_size or (height, width)
        placement = replace(
            placement,
            width=original_w,
            height=original_h,
            scale_x=placement.scale_x / reduction,
            scale_y=placement.scale_y / reduction,
        )
    if policy == "stretch":
        return resized, placement
    canvas = np.empty((*input_size, 3), np.uint8)
    canvas[:] = np.clip(np.round(fill), 0, 255).astype(np.uint8)
    top, left = int(placement.offset_y), int(placement.offset_x)
    canvas[top : top + resized_h, left : left + resized_w] = resized
    return canvas, placement


def prepare(
    data: bytes,
    input_size: tuple[int, int],
    policy: str,
    fill: tuple[float, float, float],
    *,
    max_bytes: int = FILE_MAX_BYTES,
    max_pixels: int = FILE_MAX_PIXELS,
    max_decoded_bytes: int | None = None,
) -> tuple[np.ndarray, Placement]:
    """Encoded image bytes -> (model input (input_h, input_w, 3) uint8 RGB, `Placement` in the
    upright original's pixels): a large JPEG decoded at a reduced DCT scale, then resized.

    Raises:
        ImageDecodeError, ImageTooLargeError: as `ssd_core.inference.images.decode_scaled`.
    """
    decoded = decode_scaled(
        data,
        max_bytes=max_bytes,
        max_pixels=max_pixels,
        max_decoded_bytes=max_decoded_bytes,
        needed=lambda height, width: resized_size(height, width, input_size, policy),
    )
    return resize_decoded(decoded, input_size, policy, fill)


def resize_decoded(
    decoded: DecodedImage,
    input_size: tuple[int, int],
    policy: str,
    fill: tuple[float, float, float],
) -> tuple[np.ndarray, Placement]:
    """`resize_image` of a (possibly reduced) decode, placed in its original's pixels."""
    return resize_image(
        decoded.pixels,
        input_size,
        policy,
        fill,
        reduction=decoded.reduction,
        original_size=(decoded.height, decoded.width),
    )


def prepare_file(
    path: str | Path,
    input_size: tuple[int, int],
    policy: str,
    fill: tuple[float, float, float],
) -> tuple[np.ndarray, Placement]:
    """`prepare` of a local file (the limits for trusted files).

    Raises:
        OSError: the file cannot be read.
        ImageDecodeError: as `prepare`, the message naming the file.
    """
    data = Path(path).read_bytes()
    try:
        return prepare(data, input_size, policy, fill)
    except ImageDecodeError as error:
        raise type(error)(f"{path}: {error}") from error
