"""Annotated-image answers of `POST /detect` (`render=true`, `Accept: image/png|jpeg`).

The oracle model (conftest) finds the coloured rectangle on black and a whole-image "ring" at
score 0.2. Each test asks for the JSON detections and for the rendered image of the same
upload, then checks pixel by pixel that the rendering changed exactly the outlines and
caption rectangles of the JSON boxes: the outline rule (floor/ceil of the pixel box, a band
of `style_for(...)` pixels inside it) is recomputed here from the JSON, the caption rectangle
comes from `label_rect`, whose size is OpenCV's text metrics.
"""

from __future__ import annotations

import io
import math

import httpx
import numpy as np
import pytest
from PIL import Image, ImageOps

from service.render import response_type
from ssd_core.visualize import (
    JPEG,
    class_colour,
    detection_caption,
    encode_image,
    label_rect,
    style_for,
)
from tests.service.conftest import encode, rectangle_image

SIZE = (640, 960)  # (height, width): 10x the oracle's input, 2 px outlines
BOX = (200, 150, 600, 450)  # the red rectangle, pixels, max exclusive
QUERY = {"score_threshold": "0.1"}  # keeps the whole-image ring (score 0.2) too
ORIENTATION = 0x0112  # EXIF tag


def post(url: str, data: bytes, content_type: str, params=None, headers=None) -> httpx.Response:
    """`POST /detect` with `data` as the raw body."""
    headers = {"content-type": content_type, **(headers or {})}
    return httpx.post(f"{url}/detect", content=data, params=params, headers=headers, timeout=30)


def decoded_upright(data: bytes) -> np.ndarray:
    """What any reader sees: Pillow's decoding with the EXIF orientation applied."""
    return np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))


def drawn_regions(detections: list[dict], height: int, width: int) -> tuple[np.ndarray, ...]:
    """(outline mask, caption mask) of the JSON detections, (H, W) bool each."""
    style = style_for(height, width)
    outlines = np.zeros((height, width), dtype=bool)
    captions = np.zeros((height, width), dtype=bool)
    for det in detections:
        box = [det["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")]
        x0, y0 = min(math.floor(box[0]), width - 1), min(math.floor(box[1]), height - 1)
        x1, y1 = min(math.ceil(box[2]), width), min(math.ceil(box[3]), height)
        t = style.thickness_px
        ring = np.zeros_like(outlines)
        ring[y0:y1, x0:x1] = True
        ring[y0 + t : y1 - t, x0 + t : x1 - t] = False
        outlines |= ring
        caption = detection_caption(det["label"], det["score"])
        cx0, cy0, cx1, cy1 = label_rect(box, caption, height, width, style)
        captions[cy0:cy1, cx0:cx1] = True
    return outlines, captions


def detect_twice(url: str, data: bytes, content_type: str, accept: str) -> tuple[dict, bytes]:
    as_json = post(url, data, content_type, params=QUERY)
    assert as_json.status_code == 200, as_json.text
    image = post(url, data, content_type, params=QUERY, headers={"accept": accept})
    assert image.status_code == 200, image.text
    assert image.headers["content-type"] == accept
    assert image.headers["x-detection-count"] == str(len(as_json.json()["detections"]))
    return as_json.json(), image.content


def assert_changed_exactly_where_drawn(original: np.ndarray, body: dict, rendered: np.ndarray):
    height, width = original.shape[:2]
    assert rendered.shape == original.shape == (body["height"], body["width"], 3)
    outlines, captions = drawn_regions(body["detections"], height, width)
    changed = np.any(rendered != original, axis=-1)
    assert not np.any(changed & ~(outlines | captions)), "pixels changed outside the drawing"
    assert np.all(changed[outlines | captions]), "drawn pixels equal to the input"
    for det in body["detections"]:  # outline pixels no other drawing covers: the class colour
        own = drawn_regions([det], height, width)[0]
        rest = [d for d in body["detections"] if d is not det]
        others = drawn_regions(rest, height, width)[0] if rest else np.zeros_like(own)
        alone = own & ~others & ~captions
        assert alone.any() and np.all(rendered[alone] == class_colour(det["class_id"]))


def test_png_render_changes_exactly_the_outlines_and_captions(service):
    original = rectangle_image(BOX, "red", SIZE)
    body, png = detect_twice(service.http_url, encode(original, "PNG"), "image/png", "image/png")
    assert [d["label"] for d in body["detections"]] == ["circle", "ring"]
    assert_changed_exactly_where_drawn(original, body, decoded_upright(png))


def test_jpeg_upload_rendered_losslessly_matches_the_decoded_upload(service):
    # JPEG in, PNG out: compared with the upload as decoded (what the server drew on),
    # "exactly" holds pixel for pixel.
    data = encode(rectangle_image(BOX, "green", SIZE), "JPEG", quality=85)
    body, png = detect_twice(service.http_url, data, "image/jpeg", "image/png")
    assert body["detections"][0]["label"] == "square"
    assert_changed_exactly_where_drawn(decoded_upright(data), body, decoded_upright(png))


def test_jpeg_render_differs_only_in_blocks_that_hold_the_drawing(service):
    # JPEG out re-encodes the whole image, so "exactly" is taken against the same encoder's
    # output for the undrawn upload: JPEG codes 16 x 16 blocks (MCUs, chroma subsampled)
    # independently, and decoding blends chroma only with the neighbouring blocks, so every
    # block farther than one block from a drawn pixel decodes to identical pixels.
    rng = np.random.default_rng(0)
    scene = rectangle_image(BOX, "blue", SIZE)
    scene[BOX[1] : BOX[3], BOX[0] : BOX[2], :2] = rng.integers(0, 60, (300, 400, 2))
    data = encode(scene, "JPEG", quality=95)
    response = post(service.http_url, data, "image/jpeg", params={**QUERY, "render": "true"})
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    as_json = post(service.http_url, data, "image/jpeg", params=QUERY).json()
    original = decoded_upright(data)
    undrawn = decoded_upright(encode_image(original, JPEG))
    rendered = decoded_upright(response.content)
    assert rendered.shape == original.shape
    outlines, captions = drawn_regions(as_json["detections"], *SIZE)
    near_drawing = _blocks_near(outlines | captions)
    assert np.mean(~near_drawing) > 0.5  # most of the image is checked
    assert np.array_equal(rendered[~near_drawing], undrawn[~near_drawing])
    top = as_json["detections"][0]
    own = drawn_regions([top], *SIZE)[0] & ~captions
    colour = np.array(class_colour(top["class_id"]))
    # 2 px lines lose chroma to subsampling, but the outline is there, near its class colour.
    assert np.abs(rendered[own] - colour).mean() < 0.5 * np.abs(original[own] - colour).mean()


def _blocks_near(mask: np.ndarray, block: int = 16) -> np.ndarray:
    """(H, W) bool: pixels in a `block`-aligned block holding a `mask` pixel or next to one."""
    height, width = mask.shape
    padded = np.zeros((-(-height // block) * block, -(-width // block) * block), dtype=bool)
    padded[:height, :width] = mask
    tiles = padded.reshape(padded.shape[0] // block, block, padded.shape[1] // block, block)
    hit = np.pad(tiles.any(axis=(1, 3)), 1)
    near = np.zeros_like(hit)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            near |= np.roll(hit, (dy, dx), axis=(0, 1))
    near = near[1:-1, 1:-1]
    return np.repeat(np.repeat(near, block, axis=0), block, axis=1)[:height, :width]


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_exif_rotated_upload_comes_back_upright(service, fmt):
    upright = rectangle_image((20, 100, 110, 180), "red", (192, 128))  # tall: H 192, W 128
    stored = np.ascontiguousarray(np.rot90(upright, 1))  # what the camera wrote: W x H
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # "rotate 90 CW to display"
    buffer = io.BytesIO()
    options = {"quality": 95} if fmt == "JPEG" else {}
    Image.fromarray(stored).save(buffer, format=fmt, exif=exif, **options)
    data = buffer.getvalue()
    expected = decoded_upright(data)
    assert expected.shape == upright.shape
    if fmt == "PNG":
        assert np.array_equal(expected, upright)
    content_type = f"image/{fmt.lower()}"
    body, png = detect_twice(service.http_url, data, content_type, "image/png")
    assert (body["height"], body["width"]) == (192, 128)
    assert_changed_exactly_where_drawn(expected, body, decoded_upright(png))


def test_json_stays_the_default(service):
    data = encode(rectangle_image(BOX, "red", SIZE), "PNG")
    for headers in ({}, {"accept": "*/*"}, {"accept": "application/json, image/png;q=0.5"}):
        response = post(service.http_url, data, "image/png", headers=headers)
        assert response.headers["content-type"] == "application/json", headers
        assert response.json()["detections"][0]["label"] == "circle"
    response = post(service.http_url, data, "image/png", params={"render": "false"},
                    headers={"accept": "image/png"})  # fmt: skip
    assert response.headers["content-type"] == "application/json"


def test_server_timing_header_reports_the_request_duration_and_its_stages(service):
    data = encode(rectangle_image(BOX, "red", SIZE), "PNG")
    response = post(service.http_url, data, "image/png")
    header = response.headers["server-timing"]
    entries = [entry.strip().partition(";dur=") for entry in header.split(",")]
    durations = {name: float(duration) for name, _, duration in entries}
    assert list(durations) == ["detect", "decode", "queue", "model", "decoding", "serialisation"]
    assert all(value >= 0 for value in durations.values())
    # Each entry is rounded to 0.01 ms; the stages are parts of the whole.
    assert sum(durations.values()) - durations["detect"] <= durations["detect"] + 0.05


def test_render_of_a_corrupt_upload_is_a_json_error(service):
    response = post(service.http_url, b"\xff\xd8\xff\xe0 not really a jpeg", "image/jpeg",
                    params={"render": "true"})  # fmt: skip
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert "detail" in response.json()


@pytest.mark.parametrize(
    ("render", "accept", "upload", "expected"),
    [
        (None, None, b"\x89PNG", None),
        (None, "image/jpeg", b"\x89PNG", "image/jpeg"),
        (None, "application/json;q=0.4, image/png", b"", "image/png"),
        (None, "image/png;q=0.4, application/json", b"", None),
        (None, "image/*", b"\xff\xd8\xff\xe0", "image/jpeg"),
        (None, "text/html", b"", None),
        (True, None, b"\xff\xd8\xff\xe0", "image/jpeg"),
        (True, None, b"\x89PNG", "image/png"),
        (True, "application/json", b"\x89PNG", "image/png"),
        (True, "image/jpeg;q=0.2, image/png;q=0.9", b"\xff\xd8\xff", "image/png"),
        (True, "image/png;q=0", b"\xff\xd8\xff", "image/jpeg"),
        (False, "image/png", b"\x89PNG", None),
    ],
)
def test_response_type_negotiation(render, accept, upload, expected):
    assert response_type(render, accept, upload) == expected
