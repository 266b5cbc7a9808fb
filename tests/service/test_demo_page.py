"""The demo page in a real browser (headless Chromium) against the real running service.

The service serves the shipped SSD7 shapes model, chosen explicitly (not the embedded default,
which may change). The upload is a real photo, scikit-image's astronaut: the shapes model
finds nonsense "shapes" in it, but with a spread of scores (about ten above 0.3, fewer above
0.45), which is what the table, canvas and slider checks need. Screenshots go to
`test-artifacts/` (`SSD_TEST_ARTIFACTS`).
"""

from __future__ import annotations

import io
import math
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import skimage
from PIL import Image

import ssd_core
from service.detector import load_detector
from ssd_core.visualize import class_colour
from tests.browser import ARTIFACTS, launch_another, watch_console
from tests.service.conftest import (
    ServiceHarness,
    encode,
    make_settings,
    rectangle_image,
    wait_until,
)

SHAPES_MODEL = Path(ssd_core.__file__).parent / "assets" / "ssd7_shapes.keras"
PHOTO = Path(skimage.__file__).parent / "data" / "astronaut.png"
WAIT_MS = 30_000


MAX_IMAGE_BYTES = 1_000_000  # the photo (0.79 MB) passes, a 1.2 MB noise PNG is refused


@pytest.fixture(scope="module")
def shapes_detector() -> Any:
    return load_detector(SHAPES_MODEL)


@pytest.fixture(scope="module")
def shapes_service(shapes_detector: Any) -> Iterator[ServiceHarness]:
    settings = make_settings(max_batch_size=2, max_image_bytes=MAX_IMAGE_BYTES)
    harness = ServiceHarness(settings, loader=lambda: shapes_detector).start()
    yield harness
    harness.stop()


@pytest.fixture
def open_page(chromium: Any) -> Iterator[Callable[..., Any]]:
    """Factory: a new page at `url`, its console errors and /detect requests recorded."""
    contexts = []

    def open_at(url: str, state: str = "idle", browser: Any = None) -> Any:
        context = (browser or chromium).new_context(viewport={"width": 1280, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.console_errors = watch_console(page)
        page.detect_requests = []
        page.on("request", lambda r: "/detect" in r.url and page.detect_requests.append(r.url))
        page.goto(f"{url}/")
        page.wait_for_selector(f"body[data-state={state}]", timeout=WAIT_MS)
        return page

    yield open_at
    for context in contexts:
        context.close()


@pytest.fixture
def page(open_page: Callable[..., Any], shapes_service: ServiceHarness) -> Any:
    return open_page(shapes_service.http_url)


def api_detections(url: str, data: bytes, threshold: float) -> dict:
    response = httpx.post(
        f"{url}/detect", params={"score_threshold": threshold},
        files={"image": (PHOTO.name, data, "image/png")}, timeout=30,
    )  # fmt: skip
    assert response.status_code == 200, response.text
    return response.json()


def table_rows(page: Any) -> list[dict]:
    """The detection table as the page's row data: label, class id, score, pixel box."""
    return page.eval_on_selector_all(
        "#detections tbody tr",
        "rows => rows.map(r => ({label: r.dataset.label, class_id: Number(r.dataset.classId),"
        " score: Number(r.dataset.score), box: JSON.parse(r.dataset.box)}))",
    )


def as_rows(body: dict) -> list[dict]:
    return [
        {"label": d["label"], "class_id": d["class_id"], "score": d["score"],
         "box": [d["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")]}
        for d in body["detections"]
    ]  # fmt: skip


def upload_photo(page: Any) -> None:
    page.set_input_files("#file", str(PHOTO))
    page.wait_for_selector("body[data-state=done]", timeout=WAIT_MS)


def canvas_pixel(page: Any, x: int, y: int) -> tuple[int, int, int]:
    rgba = page.evaluate(
        "([x, y]) => Array.from(document.getElementById('canvas').getContext('2d')"
        ".getImageData(x, y, 1, 1).data)",
        [x, y],
    )
    return tuple(rgba[:3])


def test_page_names_the_served_model(page, shapes_service):
    # The page lists models from the repository index (its version: the repository's).
    index = httpx.post(f"{shapes_service.http_url}/v2/repository/index", timeout=10).json()
    [info] = [row for row in index if row["state"] == "READY"]
    assert info["name"] == httpx.get(f"{shapes_service.http_url}/model", timeout=10).json()["name"]
    assert page.text_content("#model-info") == f"{info['name']}, version {info['version']}"
    assert page.console_errors == []


def test_photo_upload_draws_boxes_and_lists_what_the_api_returns(page, shapes_service):
    upload_photo(page)
    threshold = float(page.input_value("#threshold"))
    expected = api_detections(shapes_service.http_url, PHOTO.read_bytes(), threshold)
    rows = table_rows(page)
    assert len(rows) >= 3
    assert rows == as_rows(expected)
    assert (
        page.locator("#detections tbody tr").first.locator("td").nth(1).text_content()
        == (rows[0]["label"])
    )
    # The best detection's outline is on the canvas, in its class colour, where the API put it.
    scale = float(page.get_attribute("#canvas", "data-scale"))
    xmin, ymin, _, ymax = rows[0]["box"]
    mid_left = (math.floor(xmin * scale), math.floor((ymin + ymax) / 2 * scale))
    assert canvas_pixel(page, *mid_left) == class_colour(rows[0]["class_id"])
    status = page.text_content("#status")
    assert f"{len(rows)} of " in status and "server " in status and " ms" in status
    page.screenshot(path=ARTIFACTS / "demo_photo.png", full_page=True)
    assert page.console_errors == []


def test_threshold_slider_refilters_without_sending_the_image_again(page, shapes_service):
    upload_photo(page)
    before = len(table_rows(page))
    sent = len(page.detect_requests)
    page.locator("#threshold").fill("0.45")
    page.wait_for_function("document.getElementById('threshold-value').textContent === '0.45'")
    expected = api_detections(shapes_service.http_url, PHOTO.read_bytes(), 0.45)
    rows = table_rows(page)
    assert rows == as_rows(expected)
    assert 0 < len(rows) < before
    assert len(page.detect_requests) == sent  # re-filtered in the page
    page.locator("#threshold").fill("0.1")
    assert len(table_rows(page)) > before
    page.screenshot(path=ARTIFACTS / "demo_threshold_0.10.png", full_page=True)
    assert page.console_errors == []


def test_corrupt_file_shows_the_servers_message(page, shapes_service):
    upload_photo(page)
    broken = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64  # a PNG signature, then garbage
    answer = httpx.post(
        f"{shapes_service.http_url}/detect", files={"image": ("broken.png", broken)}, timeout=10
    )
    assert answer.status_code == 400
    page.set_input_files(
        "#file", files=[{"name": "broken.png", "mimeType": "image/png", "buffer": broken}]
    )
    page.wait_for_selector("body[data-state=error]", timeout=WAIT_MS)
    message = page.text_content("#error")
    assert page.is_visible("#error")
    assert message == f"The server could not read this image (400): {answer.json()['detail']}"
    assert table_rows(page) == []  # the previous photo's detections are gone
    page.screenshot(path=ARTIFACTS / "demo_corrupt_file.png", full_page=True)
    # The browser logs the 400 itself; nothing else may have gone wrong.
    assert [e for e in page.console_errors if "status of 400" not in e] == []


def error_message_for(page: Any, url: str, data: bytes, name: str) -> tuple[httpx.Response, str]:
    """(the API's answer to `data`, the page's message after uploading the same bytes)."""
    answer = httpx.post(f"{url}/detect", files={"image": (name, data)}, timeout=30)
    page.set_input_files("#file", files=[{"name": name, "mimeType": "image/png", "buffer": data}])
    page.wait_for_selector("body[data-state=error]", timeout=WAIT_MS)
    assert page.is_visible("#error")
    return answer, page.text_content("#error")


def test_oversize_image_shows_the_413_message(page, shapes_service):
    noise = np.random.default_rng(0).integers(0, 256, (600, 700, 3), dtype=np.uint8)
    data = encode(noise, "PNG")
    assert len(data) > MAX_IMAGE_BYTES
    answer, message = error_message_for(page, shapes_service.http_url, data, "big.png")
    assert answer.status_code == 413
    # The browser's multipart framing differs from httpx's by a few bytes: compare without them.
    same = [
        re.sub(r"\d+ bytes, over", "N bytes, over", t) for t in (message, answer.json()["detail"])
    ]
    assert same[0] == f"The image is too large (413): {same[1]}"


def test_overload_shows_the_503_message_with_its_retry_delay(open_page, gated_service):
    # A real overload: the forward pass is held, one request computes, one fills the queue.
    harness = gated_service(max_batch_size=1, max_queue_size=1)
    page = open_page(harness.http_url)
    detector = harness.runtime.detector
    detector.gate.clear()
    image = encode(rectangle_image((10, 10, 60, 60)), "PNG")
    held = [threading.Thread(target=httpx.post, args=(f"{harness.http_url}/detect",),
                             kwargs={"files": {"image": ("a.png", image)}, "timeout": 30})
            for _ in range(2)]  # fmt: skip
    held[0].start()
    assert detector.entered.wait(10)
    held[1].start()
    wait_until(lambda: harness.runtime.batcher.queue_depth >= 1)
    try:
        answer, message = error_message_for(page, harness.http_url, image, "a.png")
    finally:
        detector.gate.set()
        for thread in held:
            thread.join(30)
    assert answer.status_code == 503
    retry = answer.headers["retry-after"]
    detail = answer.json()["detail"]
    assert message == f"The server is busy or not ready (503): {detail}. Try again in {retry} s."
    page.screenshot(path=ARTIFACTS / "demo_overloaded.png", full_page=True)


def test_exif_rotated_photo_is_shown_upright_in_the_servers_frame(page, shapes_service):
    upright = np.zeros((200, 320, 3), np.uint8)  # wide: red left half, blue right half
    upright[:, :160] = (220, 0, 0)
    upright[:, 160:] = (0, 0, 220)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned 90 degrees; "rotate 90 CW to display"
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(np.rot90(upright, 1))).save(
        buffer, "JPEG", quality=95, exif=exif
    )
    page.set_input_files(
        "#file", files=[{"name": "turned.jpg", "mimeType": "image/jpeg",
                         "buffer": buffer.getvalue()}]
    )  # fmt: skip
    page.wait_for_selector("body[data-state=done]", timeout=WAIT_MS)
    size = page.evaluate("[document.getElementById('canvas').width, "
                         "document.getElementById('canvas').height]")  # fmt: skip
    assert size == [320, 200]
    page.locator("#threshold").fill("1")  # no boxes over the sampled pixels
    left, right = canvas_pixel(page, 40, 100), canvas_pixel(page, 280, 100)
    assert left[0] > 180 and left[2] < 40 and right[2] > 180 and right[0] < 40


def test_token_protected_server_asks_for_the_token_and_then_works(open_page, shapes_detector):
    settings = make_settings(max_batch_size=2, auth_token="demo-token-0123456789")
    harness = ServiceHarness(settings, loader=lambda: shapes_detector).start()
    try:
        page = open_page(harness.http_url, state="error")
        assert page.is_visible("#auth")
        assert "(401)" in page.text_content("#error")
        page.fill("#token", "demo-token-0123456789")
        page.click("#auth button")
        page.wait_for_selector("body[data-state=idle]", timeout=WAIT_MS)
        assert not page.is_visible("#auth") and not page.is_visible("#error")
        upload_photo(page)
        assert len(table_rows(page)) >= 3
        assert [e for e in page.console_errors if "status of 401" not in e] == []
    finally:
        harness.stop()


def test_model_chooser_uses_the_repository_index_when_the_server_lists_it(page, shapes_service):
    # A repository of several models, one unavailable, faked in the browser (Triton repository
    # extension: POST /v2/repository/index, body {}); /detect stays real. A real repository:
    # test_model_chooser_lists_a_real_repository.
    index_requests = []

    def repository_index(route: Any) -> None:
        index_requests.append((route.request.method, route.request.post_data))
        route.fulfill(json=[
            {"name": "ssd7_shapes", "version": "1", "state": "READY"},
            {"name": "faces", "version": "2", "state": "READY"},
            {"name": "retired", "version": "1", "state": "UNAVAILABLE"},
        ])  # fmt: skip

    page.route("**/openapi.json", lambda r: r.fulfill(json={"paths": {"/v2/repository/index": {}}}))
    page.route("**/v2/repository/index", repository_index)
    page.reload()
    page.wait_for_selector("body[data-state=idle]", timeout=WAIT_MS)
    assert index_requests == [("POST", "{}")]
    options = page.eval_on_selector_all("#model option", "os => os.map(o => o.value)")
    assert options == ["ssd7_shapes", "faces"] and page.is_enabled("#model")
    page.select_option("#model", "faces")
    assert page.text_content("#model-info") == "faces, version 2"
    # The server serves only ssd7_shapes (a /detect for an unknown model is a real 404).
    page.select_option("#model", "ssd7_shapes")
    upload_photo(page)
    assert "model=ssd7_shapes" in page.detect_requests[-1]


def test_model_chooser_lists_a_real_repository(open_page, tmp_path):
    for name in ("boxes", "shapes"):
        (tmp_path / name / "1").mkdir(parents=True)
        (tmp_path / name / "1" / "model.keras").write_bytes(SHAPES_MODEL.read_bytes())
    (tmp_path / "broken" / "2").mkdir(parents=True)
    (tmp_path / "broken" / "2" / "model.keras").write_bytes(b"not a model")
    settings = make_settings(
        model_repository=tmp_path, default_model="shapes", max_batch_size=2,
        max_image_bytes=MAX_IMAGE_BYTES,
    )  # fmt: skip
    harness = ServiceHarness(settings, loader=None).start()
    try:
        page = open_page(harness.http_url)
        options = page.eval_on_selector_all("#model option", "os => os.map(o => o.value)")
        assert options == ["boxes", "shapes"]  # the broken model is UNAVAILABLE: not offered
        page.select_option("#model", "boxes")
        upload_photo(page)
        assert "model=boxes" in page.detect_requests[-1]
        assert len(table_rows(page)) >= 3
        assert page.console_errors == []
    finally:
        harness.stop()


def test_webcam_frame_is_captured_and_detected(chromium, open_page, shapes_service):
    fake_camera = ("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream")
    with launch_another(chromium, fake_camera) as browser:
        page = open_page(shapes_service.http_url, browser=browser)
        page.click("#webcam")
        page.wait_for_selector("#capture:not([hidden])", timeout=WAIT_MS)
        page.wait_for_function("document.getElementById('video').videoWidth > 0")
        video = page.evaluate("[document.getElementById('video').videoWidth, "
                              "document.getElementById('video').videoHeight]")  # fmt: skip
        page.click("#capture")
        page.wait_for_selector("body[data-state=done]", timeout=WAIT_MS)
        assert page.detect_requests
        status = page.text_content("#status")
        assert f"{video[0]} × {video[1]} px" in status
        assert page.console_errors == []
        page.context.close()
