"""The one resize of inference and its inverse: stretch and letterbox, boxes back to pixels."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from ssd_core.inference.images import decode_image
from ssd_core.inference.preprocess import place, prepare, resize_image

MEAN = (123.0, 117.0, 104.0)
RED = (255, 0, 0)


def drawn(height: int, width: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """A black (H, W, 3) image with a red rectangle filling pixel box (xmin, ymin, xmax, ymax),
    max exclusive (edge coordinates)."""
    image = np.zeros((height, width, 3), np.uint8)
    xmin, ymin, xmax, ymax = box
    image[ymin:ymax, xmin:xmax] = RED
    return image


def found_box(pixels: np.ndarray) -> np.ndarray:
    """Pixel edges of the region where red passes half way, normalised by the image size."""
    height, width = pixels.shape[:2]
    rows, cols = np.nonzero(pixels[..., 0] > 127)
    box = [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
    return np.array(box, np.float64) / [width, height, width, height]


@pytest.mark.parametrize(
    ("height", "width", "input_size", "box"),
    [
        (50, 100, (300, 300), (20, 10, 60, 40)),  # scale 3: the padding above and below
        (97, 173, (300, 300), (31, 17, 120, 80)),  # non-integer scale 1.734
        (160, 60, (96, 128), (5, 40, 50, 150)),  # padded left and right, downscaled
    ],
)
def test_letterbox_box_drawn_in_the_image_maps_back_to_its_pixels(height, width, input_size, box):
    padded, placement = resize_image(drawn(height, width, box), input_size, "letterbox", MEAN)
    assert padded.shape == (*input_size, 3)
    mapped = placement.to_original(found_box(padded)[None])[0]
    np.testing.assert_allclose(mapped, box, atol=0.5)


def test_letterbox_keeps_the_aspect_ratio_centres_the_image_and_pads_with_the_mean():
    padded, placement = resize_image(np.full((50, 100, 3), 7, np.uint8), (300, 300), "letterbox",
                                     MEAN)  # fmt: skip
    assert (placement.scale_x, placement.scale_y) == (3.0, 3.0)
    assert (placement.offset_x, placement.offset_y) == (0.0, 75.0)
    np.testing.assert_array_equal(padded[75:225], 7)
    np.testing.assert_array_equal(padded[:75], np.broadcast_to(MEAN, (75, 300, 3)))
    np.testing.assert_array_equal(padded[225:], np.broadcast_to(MEAN, (75, 300, 3)))


def test_stretch_scales_each_side_to_the_input():
    pixels, placement = resize_image(drawn(128, 192, (40, 20, 100, 80)), (64, 96), "stretch", MEAN)
    assert pixels.shape == (64, 96, 3)
    assert (placement.scale_x, placement.scale_y, placement.offset_x) == (0.5, 0.5, 0.0)
    np.testing.assert_allclose(placement.to_original(found_box(pixels)[None])[0],
                               (40, 20, 100, 80), atol=1.0)  # fmt: skip


@pytest.mark.parametrize("policy", ["stretch", "letterbox"])
@pytest.mark.parametrize(("height", "width"), [(1, 1), (37, 411), (480, 640), (1000, 33)])
def test_to_original_is_the_exact_inverse_of_the_placement(policy, height, width):
    placement = place(height, width, (300, 512), policy)
    rng = np.random.default_rng(height * width)
    corners = np.sort(rng.uniform(0, 1, (20, 2, 2)), axis=1) * [width, height]
    boxes = np.stack([corners[:, 0, 0], corners[:, 0, 1], corners[:, 1, 0], corners[:, 1, 1]], 1)
    scale = [placement.scale_x, placement.scale_y] * 2
    offset = [placement.offset_x, placement.offset_y] * 2
    normalised = (boxes * scale + offset) / [512, 300, 512, 300]  # where resize_image put them
    np.testing.assert_allclose(placement.to_original(normalised), boxes, rtol=1e-5, atol=1e-3)


def test_to_original_clips_to_the_image():
    placement = place(100, 200, (300, 300), "letterbox")  # image at rows 75..225 of the input
    boxes = placement.to_original(np.array([[-0.5, 0.0, 1.5, 0.3], [0.1, 0.1, 0.2, 0.2]]))
    np.testing.assert_allclose(boxes[0], [0, 0, 200, 10])
    np.testing.assert_allclose(boxes[1], [20, 0, 40, 0])  # all in the padding: no area


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((10, 10, (5, 5), "crop"), "resize policy must be one of"),
        ((0, 10, (5, 5), "stretch"), "at least one pixel"),
    ],
)
def test_bad_arguments_are_refused(arguments, message):
    with pytest.raises(ValueError, match=message):
        place(*arguments)


def test_resize_refuses_a_non_rgb_array():
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8 RGB"):
        resize_image(np.zeros((4, 4), np.uint8), (2, 2), "stretch", MEAN)


# --- prepare: encoded bytes, a large JPEG decoded at a reduced DCT scale -------------------------


def jpeg(image: np.ndarray, orientation: int = 1) -> bytes:
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=95, exif=exif.tobytes())
    return buffer.getvalue()


@pytest.mark.parametrize("policy", ["stretch", "letterbox"])
@pytest.mark.parametrize(
    ("height", "width", "input_size", "box"),
    [
        (3000, 4000, (300, 300), (1210, 805, 2630, 2210)),  # 1/8
        (1081, 1923, (128, 208), (301, 77, 1000, 600)),  # 1/8, sizes not multiples of 8
        (480, 640, (128, 208), (100, 50, 400, 300)),  # 1/2
        (480, 640, (300, 300), (100, 50, 400, 300)),  # full size
    ],
)
def test_prepared_box_maps_back_to_the_original_pixels(height, width, input_size, box, policy):
    pixels, placement = prepare(jpeg(drawn(height, width, box)), input_size, policy, MEAN)
    assert pixels.shape == (*input_size, 3)
    assert (placement.height, placement.width) == (height, width)
    mapped = placement.to_original(found_box(pixels)[None])[0]
    # One model-input pixel, in original pixels: what the resize itself can resolve.
    tolerance = 1.0 / min(placement.scale_x, placement.scale_y)
    np.testing.assert_allclose(mapped, box, atol=tolerance)


def test_prepared_rotated_jpeg_maps_back_to_the_upright_original():
    stored = drawn(1200, 1600, (100, 300, 500, 700))  # shown rotated 90 CW: 1200 wide x 1600 high
    pixels, placement = prepare(jpeg(stored, orientation=6), (300, 300), "stretch", MEAN)
    assert (placement.width, placement.height) == (1200, 1600)
    mapped = placement.to_original(found_box(pixels)[None])[0]
    # Rotating 90 CW maps stored (x, y) to shown (1200 - y, x).
    np.testing.assert_allclose(mapped, (1200 - 700, 100, 1200 - 300, 500), atol=6.0)


def test_prepare_equals_resize_of_the_full_decode_when_not_reduced():
    image = drawn(480, 640, (100, 50, 400, 300))
    data = jpeg(image)
    pixels, placement = prepare(data, (300, 300), "stretch", MEAN)
    expected, expected_placement = resize_image(
        decode_image(data, max_bytes=10**8, max_pixels=10**8), (300, 300), "stretch", MEAN
    )
    np.testing.assert_array_equal(pixels, expected)
    assert placement == expected_placement
