"""The service's image step: `ssd_core.inference` decoding and resizing with the service's
limits, its errors as the service's (400 / 413), and the deadline (decoding itself is tested in
tests/ssd_core/inference/test_images.py)."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from service.errors import DeadlineExceededError, ImageTooLargeError, InvalidImageError
from service.images import decode_image, prepare_image
from tests.service.test_load import png_declaring

LIMITS = {"max_bytes": 1_000_000, "max_pixels": 1_000_000}
RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (12, 20, 3), dtype=np.uint8)


class StretchTo:
    """The image path of a predictor whose model input is (6, 10), stretched."""

    def prepare(self, data, **limits):
        from ssd_core.inference import prepare

        return prepare(data, (6, 10), "stretch", (0.0, 0.0, 0.0), **limits)


def save(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def test_prepare_resizes_to_the_input_size_and_keeps_the_original_size():
    prepared = prepare_image(save(Image.fromarray(RGB), "PNG"), StretchTo(), **LIMITS)
    assert prepared.pixels.shape == (6, 10, 3)
    assert (prepared.width, prepared.height) == (20, 12)
    # Exact 2x downscale with bilinear interpolation averages each 2x2 block.
    blocks = RGB.reshape(6, 2, 10, 2, 3).astype(float).mean(axis=(1, 3))
    assert np.abs(prepared.pixels.astype(float) - blocks).max() <= 1


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (b"", InvalidImageError, "empty image"),
        (b"definitely not an image", InvalidImageError, "not a supported image"),
        (save(Image.fromarray(RGB), "PNG")[:-30], InvalidImageError, "corrupt or truncated"),
        (png_declaring(2000, 1000), ImageTooLargeError, "2000x1000 = 2000000 pixels"),
        (b"\x00" * 1_000_001, ImageTooLargeError, "limit of 1000000 bytes"),
    ],
)
def test_bad_data_gets_the_service_error_with_a_clear_message(data, error, message):
    with pytest.raises(error, match=message):
        decode_image(data, **LIMITS)


def test_decoded_size_limit_is_a_413():
    data = save(Image.fromarray(RGB), "PNG")  # 240 px x 3 bytes = 720 bytes decoded
    with pytest.raises(ImageTooLargeError, match="decodes to 720 bytes"):
        decode_image(data, **LIMITS, max_decoded_bytes=719)


def test_no_decode_after_the_deadline():
    # Data that would fail to decode: the deadline error proves decoding never started.
    with pytest.raises(DeadlineExceededError, match="before its image was decoded"):
        prepare_image(b"not an image", StretchTo(), **LIMITS, deadline_s=time.monotonic() - 0.001)
