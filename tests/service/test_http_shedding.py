"""Load shedding ahead of the routes (`service.http_shedding`): which requests it answers and
that its answers are the routes' own (status, body, Retry-After, metrics), while the token
check, unknown models and every other request still reach the app."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from service.http_shedding import Target, detection_target
from tests.service.conftest import encode, rectangle_image, wait_until
from tests.service.test_load import metric_samples

TOKEN = "shedding-token-0123456789"
PNG = encode(rectangle_image((0, 0, 20, 20)))


@pytest.mark.parametrize(
    ("path", "query", "expected"),
    [
        ("/detect", b"", Target(None, None, "http")),
        ("/detect", b"score_threshold=0.5&model=faces", Target("faces", None, "http")),
        ("/detect", b"model=a&model=b", Target("b", None, "http")),  # FastAPI reads the last
        ("/detect", b"model=sh%C3%A4pes", Target("shäpes", None, "http")),
        ("/v2/models/faces/infer", b"", Target("faces", None, "oip-http")),
        ("/v2/models/faces/versions/3/infer", b"", Target("faces", "3", "oip-http")),
        ("/v2/models/faces/ready", b"", None),
        ("/v2/models//infer", b"", None),
        ("/v2/models/a/b/infer", b"", None),
        ("/v2/models/a/versions//infer", b"", None),
        ("/detect/", b"", None),
        ("/healthz", b"", None),
    ],
)
def test_detection_targets_are_the_routes_that_take_images(path, query, expected):
    assert detection_target(path, query) == expected


@pytest.fixture
def full_service(gated_service, gated_detector):
    """A service (with the given overrides) whose queue is full: one request in the model,
    one queued; released at the end."""
    pool = ThreadPoolExecutor(2)
    held = []

    def start(**overrides):
        service = gated_service(max_batch_size=1, max_queue_size=1, **overrides)
        headers = {"authorization": f"Bearer {TOKEN}", "content-type": "image/png"}
        gated_detector.gate.clear()
        for _ in range(2):
            held.append(
                pool.submit(httpx.post, f"{service.http_url}/detect", content=PNG, headers=headers)
            )
            wait_until(gated_detector.entered.is_set)
        wait_until(lambda: service.runtime.batcher.queue_depth == 1)
        return service

    yield start
    gated_detector.gate.set()
    assert [future.result().status_code for future in held] == [200] * len(held)
    pool.shutdown()


def test_a_full_queue_is_refused_before_parameter_validation(full_service):
    """The refusal comes before routing and validation: an out-of-range threshold, which the
    route would answer 422, gets the 503 of a full queue (retrying is what the client must do
    first either way)."""
    service = full_service()
    answer = httpx.post(
        f"{service.http_url}/detect?score_threshold=7",
        content=PNG,
        headers={"content-type": "image/png"},
    )
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "1"
    assert answer.json() == {"detail": "queue is full (1 requests waiting)"}


def test_open_inference_protocol_refusals_keep_its_error_body_and_metrics_label(full_service):
    service = full_service()
    name = service.runtime.repository.loaded()[0].name
    before = metric_samples(service.http_url)
    answer = httpx.post(f"{service.http_url}/v2/models/{name}/infer", json={"inputs": []})
    after = metric_samples(service.http_url)
    assert answer.status_code == 503
    assert answer.json() == {"error": "queue is full (1 requests waiting)"}
    key = ("ssd_requests_total", (("protocol", "oip-http"), ("status", "503")))
    assert after.get(key, 0) - before.get(key, 0) == 1


def test_unknown_models_and_missing_tokens_still_get_the_apps_answer(full_service):
    service = full_service(auth_token=TOKEN)
    auth = {"authorization": f"Bearer {TOKEN}", "content-type": "image/png"}
    no_token = httpx.post(
        f"{service.http_url}/detect", content=PNG, headers={"content-type": "image/png"}
    )
    unknown = httpx.post(f"{service.http_url}/detect?model=nope", content=PNG, headers=auth)
    full = httpx.post(f"{service.http_url}/detect", content=PNG, headers=auth)
    assert no_token.status_code == 401
    assert unknown.status_code == 404
    assert full.status_code == 503
