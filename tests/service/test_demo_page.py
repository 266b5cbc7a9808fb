"""The demo page in a real browser (headless Chromium) against the real running service.

The service serves the shipped SSD7 shapes model, chosen explicitly (not the embedded default,
which may change). The upload is a real photo, scikit-image's astronaut: the shapes model
finds nonsense "shapes" in it, but with a spread of scores (about ten above 0.3, fewer above
0.45), which is what the table, canvas and slider checks need. Screenshots go to
`test-artifacts/` (`SSD_TEST_ARTIFACTS`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import skimage

import ssd_core
from service.detector import load_detector
from ssd_core.visualize import class_colour
from tests.browser import ARTIFACTS, watch_console
from tests.service.conftest import ServiceHarness, make_settings

SHAPES_MODEL = Path(ssd_core.__file__).parent / "assets" / "ssd7_shapes.keras"
PHOTO = Path(skimage.__file__).parent / "data" / "astronaut.png"
WAIT_MS = 30_000


@pytest.fixture(scope="module")
def shapes_service() -> Iterator[ServiceHarness]:
    detector = load_detector(SHAPES_MODEL)
    harness = ServiceHarness(make_settings(max_batch_size=2), loader=lambda: detector).start()
    yield harness
    harness.stop()


@pytest.fixture
def page(chromium: Any, shapes_service: ServiceHarness) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.console_errors = watch_console(page)
    page.detect_requests = []
    page.on("request", lambda r: "/detect" in r.url and page.detect_requests.append(r.url))
    page.goto(f"{shapes_service.http_url}/")
    page.wait_for_selector("body[data-state=idle]", timeout=WAIT_MS)
    yield page
    context.close()


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
    info = httpx.get(f"{shapes_service.http_url}/model", timeout=10).json()
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
