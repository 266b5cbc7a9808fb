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
    decode_scaled,
    decoded_size_bytes,
    read_image,
)
from tests.service.test_load import png_declaring

LIMITS = {"max_bytes": 1_000_000, "max_pixels": 1_000_000}
BIG_LIMITS = {"max_bytes": 50_000_000, "max_pixels": 50_000_000}
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


# --- reduced DCT scale (decode_scaled) -----------------------------------------------------------


def smooth_image(height: int, width: int) -> np.ndarray:
    """A smooth RGB gradient (JPEG keeps it well at any scale)."""
    y, x = np.mgrid[0:height, 0:width]
    channels = [x * 255 // width, y * 255 // height, (x + y) * 127 // (width + height)]
    return np.stack(channels, -1).astype(np.uint8)


def needs(height: int, width: int):
    """A `needed` callback asking for at least (height, width), recording what it was asked."""
    asked = []

    def needed(original_h: int, original_w: int) -> tuple[int, int]:
        asked.append((original_h, original_w))
        return height, width

    needed.asked = asked  # type: ignore[attr-defined]
    return needed


@pytest.mark.parametrize(
    ("size", "need", "reduction", "decoded"),
    [
        ((480, 640), (300, 300), 1, (480, 640)),  # 1.6x: under twice the input, full size
        ((480, 640), (128, 208), 2, (240, 320)),  # 3x wide, 3.75x high: 1/2
        ((3000, 4000), (300, 300), 8, (375, 500)),  # 10x: 1/8
        ((1081, 1921), (128, 208), 8, (136, 241)),  # odd sizes: rounded up
        ((1080, 1920), (300, 300), 2, (540, 960)),  # 3.6x: 1/2 (1/4 would give 270 < 300)
    ],
)
def test_large_jpeg_decodes_at_the_largest_reduction_keeping_the_needed_size(
    size, need, reduction, decoded
):
    data = save(Image.fromarray(smooth_image(*size)), "JPEG", quality=90)
    result = decode_scaled(data, **BIG_LIMITS, needed=needs(*need))
    assert result.reduction == reduction
    assert result.pixels.shape == (*decoded, 3)
    assert (result.height, result.width) == size  # the original's size


def test_reduced_decode_is_close_to_the_full_decode_downscaled():
    image = smooth_image(1200, 1600)
    data = save(Image.fromarray(image), "JPEG", quality=95)
    result = decode_scaled(data, **BIG_LIMITS, needed=needs(150, 200))
    assert result.reduction == 8
    full = decode_image(data, **BIG_LIMITS).astype(np.float64)
    area_mean = full.reshape(150, 8, 200, 8, 3).mean(axis=(1, 3))  # each 8x8 block's mean
    assert np.abs(result.pixels - area_mean).mean() < 2.0


def test_reduced_decode_of_a_rotated_jpeg_asks_for_the_upright_size():
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 800 wide x 400 high, shown 400 wide x 800 high
    data = save(Image.fromarray(smooth_image(400, 800)), "JPEG", exif=exif.tobytes())
    needed = needs(300, 100)  # (height, width) of the upright image: 800 / 300 = 2.67x, 4x
    result = decode_scaled(data, **BIG_LIMITS, needed=needed)
    assert needed.asked == [(800, 400)]
    assert result.reduction == 2
    assert (result.height, result.width) == (800, 400)
    assert result.pixels.shape == (400, 200, 3)
    full = decode_image(data, **BIG_LIMITS)
    np.testing.assert_allclose(result.pixels[::50, ::50], full[::100, ::100], atol=40)


def test_png_is_never_reduced():
    data = save(Image.fromarray(smooth_image(600, 800)), "PNG")
    result = decode_scaled(data, **BIG_LIMITS, needed=needs(100, 100))
    assert result.reduction == 1 and result.pixels.shape == (600, 800, 3)


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small JPEG whose frame header (SOF0) is patched to declare width x height."""
    data = bytearray(save(Image.fromarray(RGB), "JPEG"))
    sof = data.index(b"\xff\xc0")  # marker, length (2), precision (1), height (2), width (2)
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


@pytest.mark.parametrize(
    ("width", "height", "message"),
    [(60000, 60000, "too many pixels"), (2000, 1500, "the limit is 1000000 pixels")],
)
def test_a_reduced_decode_still_refuses_a_bomb_from_its_header(width, height, message):
    with pytest.raises(ImageTooLargeError, match=message):
        decode_scaled(jpeg_declaring(width, height), **LIMITS, needed=needs(10, 10))
