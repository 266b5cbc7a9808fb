"""Image decoding: formats, EXIF orientation, mode conversions, limits, against NumPy truths."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from ssd_core.inference.images import (
    ImageDecodeError,
    ImageTooLargeError,
    decode_image,
    decoded_size_bytes,
    read_image,
)
from tests.service.test_load import png_declaring

LIMITS = {"max_bytes": 1_000_000, "max_pixels": 1_000_000}
RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (12, 20, 3), dtype=np.uint8)


def save(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("fmt", "options"), [("PNG", {}), ("BMP", {}), ("WEBP", {"lossless": True})]
)
def test_lossless_formats_decode_exactly(fmt, options):
    decoded = decode_image(save(Image.fromarray(RGB), fmt, **options), **LIMITS)
    np.testing.assert_array_equal(decoded, RGB)


def test_jpeg_decodes_close_to_the_original():
    smooth = np.full((16, 16, 3), (200, 100, 50), dtype=np.uint8)
    decoded = decode_image(save(Image.fromarray(smooth), "JPEG", quality=95), **LIMITS)
    assert decoded.shape == (16, 16, 3)
    assert np.abs(decoded.astype(int) - smooth).max() <= 3


def test_grayscale_is_replicated_to_three_channels():
    gray = RGB[:, :, 0]
    decoded = decode_image(save(Image.fromarray(gray, "L"), "PNG"), **LIMITS)
    np.testing.assert_array_equal(decoded, np.stack([gray] * 3, axis=2))


def test_rgba_drops_alpha():
    rgba = np.concatenate([RGB, np.full((12, 20, 1), 7, np.uint8)], axis=2)
    decoded = decode_image(save(Image.fromarray(rgba, "RGBA"), "PNG"), **LIMITS)
    np.testing.assert_array_equal(decoded, RGB)


def test_16_bit_grayscale_keeps_the_high_byte():
    gray16 = RNG.integers(0, 65536, (12, 20), dtype=np.uint16)
    decoded = decode_image(save(Image.fromarray(gray16), "PNG"), **LIMITS)
    np.testing.assert_array_equal(decoded[:, :, 1], (gray16 >> 8).astype(np.uint8))


def test_exif_orientation_6_rotates_clockwise():
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    data = save(Image.fromarray(RGB), "WEBP", lossless=True, exif=exif.tobytes())
    decoded = decode_image(data, **LIMITS)
    np.testing.assert_array_equal(decoded, np.rot90(RGB, k=-1))


def tiff_orientation(value: int, byte_order: str) -> bytes:
    """A minimal TIFF/EXIF block, one IFD entry: Orientation (0x0112, SHORT) = `value`."""
    if byte_order == "II":  # little-endian
        return (
            b"II*\0" + struct.pack("<IH", 8, 1) + struct.pack("<HHIHH", 0x0112, 3, 1, value, 0)
        ) + b"\0\0\0\0"
    return (
        b"MM\0*" + struct.pack(">IH", 8, 1) + struct.pack(">HHIHH", 0x0112, 3, 1, value, 0)
    ) + b"\0\0\0\0"


def png_with_exif_chunk(image: np.ndarray, exif: bytes, *, before_idat: bool) -> bytes:
    """A PNG carrying `exif` in an eXIf chunk (PNG 1.5 / PNG third edition), placed before the
    image data or after it (both are allowed; some writers put metadata last)."""
    data = save(Image.fromarray(image), "PNG")
    chunk = struct.pack(">I", len(exif)) + b"eXIf" + exif
    chunk += struct.pack(">I", zlib.crc32(b"eXIf" + exif))
    at = data.index(b"IDAT") - 4 if before_idat else data.rindex(b"IEND") - 4
    return data[:at] + chunk + data[at:]


@pytest.mark.parametrize("byte_order", ["II", "MM"])
@pytest.mark.parametrize("before_idat", [True, False])
def test_png_exif_chunk_orientation_6_rotates_like_jpeg(byte_order, before_idat):
    data = png_with_exif_chunk(RGB, tiff_orientation(6, byte_order), before_idat=before_idat)
    np.testing.assert_array_equal(decode_image(data, **LIMITS), np.rot90(RGB, k=-1))


@pytest.mark.parametrize(("orientation", "turns"), [(3, 2), (6, -1), (8, 1)])
def test_webp_exif_orientation_rotates_like_jpeg(orientation, turns):
    exif = tiff_orientation(orientation, "II")
    data = save(Image.fromarray(RGB), "WEBP", lossless=True, exif=exif)
    np.testing.assert_array_equal(decode_image(data, **LIMITS), np.rot90(RGB, k=turns))


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (b"", ImageDecodeError, "empty image"),
        (b"definitely not an image", ImageDecodeError, "not a supported image"),
        (save(Image.new("RGB", (4, 4)), "GIF"), ImageDecodeError, "not a supported image"),
        (save(Image.fromarray(RGB), "PNG")[:-30], ImageDecodeError, "corrupt or truncated"),
        (png_declaring(2000, 1000), ImageTooLargeError, "2000x1000 = 2000000 pixels"),
        (b"\x00" * 1_000_001, ImageTooLargeError, "limit of 1000000 bytes"),
    ],
)
def test_bad_data_is_rejected_with_a_clear_message(data, error, message):
    with pytest.raises(error, match=message):
        decode_image(data, **LIMITS)


@pytest.mark.parametrize(
    ("array", "mode", "bytes_per_pixel"),
    [
        (RGB[:, :, 0], "L", 1),
        (RNG.integers(0, 65536, (12, 20), dtype=np.uint16), "I;16", 2),
        (RGB, "RGB", 3),
        (np.concatenate([RGB, RGB[:, :, :1]], axis=2), "RGBA", 4),
    ],
)
def test_decoded_size_counts_the_bytes_per_pixel_of_the_mode(array, mode, bytes_per_pixel):
    image = Image.open(io.BytesIO(save(Image.fromarray(array), "PNG")))
    assert image.mode == mode
    assert decoded_size_bytes(image) == 12 * 20 * bytes_per_pixel


def test_decoded_size_limit_refuses_before_decoding():
    data = save(Image.fromarray(RGB), "PNG")  # 240 px x 3 bytes = 720 bytes decoded
    with pytest.raises(ImageTooLargeError, match="decodes to 720 bytes"):
        decode_image(data, **LIMITS, max_decoded_bytes=719)
    assert decode_image(data, **LIMITS, max_decoded_bytes=720).shape == (12, 20, 3)


def test_read_image_names_the_file_it_cannot_decode(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(save(Image.fromarray(RGB), "PNG")[:-30])
    with pytest.raises(ImageDecodeError, match=f"{path}: corrupt or truncated"):
        read_image(path)
