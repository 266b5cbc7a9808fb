"""The HTTP API against a real uvicorn server on an ephemeral port, over the oracle model."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from service.http_app import create_app
from service.runtime import Runtime
from tests.service.conftest import encode, make_settings, rectangle_image

BOX = (40, 20, 100, 80)  # pixels in the 192 x 128 test image, max exclusive


def assert_box(actual: dict[str, float], expected: tuple[float, ...], tol: float = 0.5) -> None:
    got = (actual["xmin"], actual["ymin"], actual["xmax"], actual["ymax"])
    assert np.allclose(got, expected, atol=tol), f"box {got} != {expected}"


def test_detect_raw_png_body_returns_the_rectangle_in_original_pixels(service):
    body = encode(rectangle_image(BOX, "red"))
    response = httpx.post(
        f"{service.http_url}/detect", content=body, headers={"content-type": "image/png"}
    )
    assert response.status_code == 200, response.text
    payload = response.json()
    assert (payload["width"], payload["height"]) == (192, 128)
    assert (payload["model_name"], payload["model_version"]) == ("ssd7", "oracle-1")
    [detection] = payload["detections"]  # the 0.2 "ring" is below the 0.3 default threshold
    assert (detection["label"], detection["class_id"]) == ("circle", 1)
    assert detection["score"] == pytest.approx(0.9)
    assert_box(detection["box"], BOX)


def test_detect_multipart_image_field(service):
    body = encode(rectangle_image(BOX, "green"))
    response = httpx.post(
        f"{service.http_url}/detect", files={"image": ("x.png", body, "image/png")}
    )
    assert response.status_code == 200, response.text
    [detection] = response.json()["detections"]
    assert (detection["label"], detection["class_id"]) == ("square", 2)
    assert_box(detection["box"], BOX)


@pytest.mark.parametrize(
    ("fmt", "options", "content_type", "tol"),
    [
        ("JPEG", {"quality": 95, "subsampling": 0}, "image/jpeg", 4.0),
        ("BMP", {}, "image/bmp", 0.5),
        ("WEBP", {"lossless": True}, "image/webp", 0.5),
    ],
)
def test_detect_accepts_jpeg_bmp_webp(service, fmt, options, content_type, tol):
    body = encode(rectangle_image(BOX, "blue"), fmt, **options)
    response = httpx.post(
        f"{service.http_url}/detect", content=body, headers={"content-type": content_type}
    )
    assert response.status_code == 200, response.text
    [detection] = response.json()["detections"]
    assert detection["label"] == "triangle"
    assert_box(detection["box"], BOX, tol)


def test_detect_applies_exif_orientation(service):
    # Stored 128 wide x 192 high; EXIF orientation 6 displays it rotated 90 degrees clockwise,
    # as 192 x 128, and a stored pixel (x, y) is displayed at (191 - y, x).
    stored = rectangle_image((20, 40, 80, 100), "red", size=(192, 128))
    exif = Image.Exif()
    exif[0x0112] = 6
    body = encode(stored, "JPEG", quality=95, subsampling=0, exif=exif.tobytes())
    response = httpx.post(
        f"{service.http_url}/detect", content=body, headers={"content-type": "image/jpeg"}
    )
    payload = response.json()
    assert (payload["width"], payload["height"]) == (192, 128)
    assert_box(payload["detections"][0]["box"], (192 - 100, 20, 192 - 40, 80), tol=4.0)


def test_detect_applies_png_exif_chunk_orientation(service):
    from tests.ssd_core.inference.test_images import png_with_exif_chunk, tiff_orientation

    stored = rectangle_image((20, 40, 80, 100), "red", size=(192, 128))
    body = png_with_exif_chunk(stored, tiff_orientation(6, "MM"), before_idat=False)
    response = httpx.post(
        f"{service.http_url}/detect", content=body, headers={"content-type": "image/png"}
    )
    payload = response.json()
    assert (payload["width"], payload["height"]) == (192, 128)
    assert_box(payload["detections"][0]["box"], (192 - 100, 20, 192 - 40, 80), tol=0.5)


def test_detect_score_threshold_query_returns_lower_scores_sorted(service):
    body = encode(rectangle_image(BOX))
    response = httpx.post(
        f"{service.http_url}/detect",
        params={"score_threshold": 0.1},
        content=body,
        headers={"content-type": "image/png"},
    )
    detections = response.json()["detections"]
    assert [(d["label"], round(d["score"], 3)) for d in detections] == [
        ("circle", 0.9),
        ("ring", 0.2),
    ]
    assert_box(detections[1]["box"], (0, 0, 192, 128))


@pytest.mark.parametrize("classes", ["ring", "5", "ring,triangle"])
def test_detect_classes_query_filters_by_label(service, classes):
    response = httpx.post(
        f"{service.http_url}/detect",
        params={"score_threshold": 0.1, "classes": classes},
        content=encode(rectangle_image(BOX)),
        headers={"content-type": "image/png"},
    )
    assert [d["label"] for d in response.json()["detections"]] == ["ring"]


def test_detect_max_detections_query_keeps_the_best(service):
    response = httpx.post(
        f"{service.http_url}/detect",
        params={"score_threshold": 0.1, "max_detections": 1},
        content=encode(rectangle_image(BOX)),
        headers={"content-type": "image/png"},
    )
    assert [d["label"] for d in response.json()["detections"]] == ["circle"]


def test_detect_black_image_has_no_detections(service):
    response = httpx.post(
        f"{service.http_url}/detect",
        content=encode(np.zeros((40, 50, 3), np.uint8)),
        headers={"content-type": "image/png"},
    )
    assert response.status_code == 200
    assert response.json()["detections"] == []


def test_healthz_is_ok(service):
    response = httpx.get(f"{service.http_url}/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_readyz_is_ready_after_warm_up(service):
    response = httpx.get(f"{service.http_url}/readyz")
    assert (response.status_code, response.json()) == (200, {"status": "ready"})


def test_model_endpoint_describes_the_served_model(service, tiny_config):
    payload = httpx.get(f"{service.http_url}/model").json()
    assert payload["name"] == "ssd7"
    assert payload["version"] == "oracle-1"
    assert payload["class_names"] == ["circle", "square", "triangle", "star", "ring"]
    assert (payload["input_height"], payload["input_width"]) == (64, 96)
    assert payload["config"] == tiny_config.to_dict()


def test_metrics_count_http_requests_by_status(service):
    httpx.post(f"{service.http_url}/detect", content=b"", headers={"content-type": "image/png"})
    text = httpx.get(f"{service.http_url}/metrics").text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    labels = (("model", "ssd7"), ("protocol", "http"), ("status", "400"), ("version", "1"))
    assert samples[("ssd_requests_total", labels)] >= 1
    assert ("ssd_queue_depth", (("model", "ssd7"), ("version", "1"))) in samples


def test_openapi_docs_describe_detect(service):
    assert httpx.get(f"{service.http_url}/docs").status_code == 200
    schema = httpx.get(f"{service.http_url}/openapi.json").json()
    body = schema["paths"]["/detect"]["post"]["requestBody"]["content"]
    assert set(body) == {"multipart/form-data", "image/*"}


def _asgi_get(runtime: Runtime, path: str) -> httpx.Response:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(runtime.settings, runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get(path)

    return asyncio.run(call())


def test_readyz_is_not_ready_before_the_model_loads(oracle_detector):
    runtime = Runtime(make_settings(), loader=lambda: oracle_detector)  # never started
    assert _asgi_get(runtime, "/readyz").status_code == 503
    assert _asgi_get(runtime, "/healthz").status_code == 200
    ready = _asgi_get(runtime, "/v2/health/ready")
    assert (ready.status_code, ready.json()) == (503, {"ready": False})
    live = _asgi_get(runtime, "/v2/health/live")
    assert (live.status_code, live.json()) == (200, {"live": True})


def test_readyz_turns_false_on_shutdown(oracle_detector):
    runtime = Runtime(make_settings(), loader=lambda: oracle_detector)
    asyncio.run(runtime.start())
    assert _asgi_get(runtime, "/readyz").status_code == 200
    assert _asgi_get(runtime, "/v2/health/ready").json() == {"ready": True}
    runtime.begin_shutdown()
    assert _asgi_get(runtime, "/readyz").status_code == 503
    assert _asgi_get(runtime, "/v2/health/ready").status_code == 503
