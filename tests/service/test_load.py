"""Batching, overload, deadlines, failures and bad input on a real service whose forward pass
the test can hold (`GatedDetector`), so queue states are reached deterministically."""

from __future__ import annotations

import socket
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor

import grpc
import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service._generated import detector_pb2, detector_pb2_grpc
from tests.service.conftest import distinct_boxes, encode, rectangle_image, wait_until

PNG = {"content-type": "image/png"}


def post_png(url: str, box: tuple[int, int, int, int], **kwargs) -> httpx.Response:
    return httpx.post(f"{url}/detect", content=encode(rectangle_image(box)), headers=PNG, **kwargs)


def grpc_detect(target: str, box: tuple[int, int, int, int], timeout: float = 30):
    with grpc.insecure_channel(target) as channel:
        request = detector_pb2.DetectRequest(image=encode(rectangle_image(box)))
        return detector_pb2_grpc.DetectorStub(channel).Detect(request, timeout=timeout)


def metric_samples(url: str) -> dict[tuple[str, tuple], float]:
    """Samples by (name, sorted labels), summed over the `model` and `version` labels."""
    text = httpx.get(f"{url}/metrics").text
    samples: dict[tuple[str, tuple], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = {k: v for k, v in s.labels.items() if k not in ("model", "version")}
            key = (s.name, tuple(sorted(labels.items())))
            samples[key] = samples.get(key, 0.0) + s.value
    return samples


def test_concurrent_http_and_grpc_requests_share_batches_and_get_their_own_answers(
    gated_service, gated_detector
):
    service = gated_service(max_batch_size=8, max_batch_delay_ms=50)
    gated_detector.gate.clear()
    boxes = distinct_boxes(17)
    with ThreadPoolExecutor(17) as pool:
        first = pool.submit(post_png, service.http_url, boxes[0], timeout=30)
        gated_detector.entered.wait(10)  # the first batch holds the model; the rest queue up
        futures = {
            box: pool.submit(post_png, service.http_url, box, timeout=30)
            if i % 2
            else pool.submit(grpc_detect, service.grpc_target, box)
            for i, box in enumerate(boxes[1:])
        }
        wait_until(lambda: service.runtime.batcher.queue_depth == 16)
        gated_detector.gate.set()
        results = {box: future.result() for box, future in futures.items()}
        results[boxes[0]] = first.result()
    for box, result in results.items():
        if isinstance(result, httpx.Response):
            got = result.json()["detections"][0]["box"]
            got = (got["xmin"], got["ymin"], got["xmax"], got["ymax"])
        else:
            got = (result.detections[0].box.xmin, result.detections[0].box.ymin,
                   result.detections[0].box.xmax, result.detections[0].box.ymax)  # fmt: skip
        assert np.allclose(got, box, atol=0.5), f"request for {box} got {got}"
    samples = metric_samples(service.http_url)
    batches = samples[("ssd_batch_size_count", ())]
    single = samples[("ssd_batch_size_bucket", (("le", "1.0"),))]
    assert (batches, single) == (3, 1)  # 1 + 8 + 8 requests
    assert samples[("ssd_batch_size_sum", ())] == 17
    assert gated_detector.batches == [1, 8, 8]


def test_full_queue_gives_http_503_with_retry_after(gated_service, gated_detector):
    service = gated_service(max_batch_size=1, max_queue_size=2)
    gated_detector.gate.clear()
    with ThreadPoolExecutor(3) as pool:
        held = [pool.submit(post_png, service.http_url, (0, 0, 20, 20), timeout=30)]
        gated_detector.entered.wait(10)
        held += [
            pool.submit(post_png, service.http_url, (0, 0, 20, 20), timeout=30) for _ in range(2)
        ]
        wait_until(lambda: service.runtime.batcher.queue_depth == 2)
        refused = post_png(service.http_url, (0, 0, 20, 20), timeout=30)
        gated_detector.gate.set()
        assert [f.result().status_code for f in held] == [200, 200, 200]
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert refused.json() == {"detail": "queue is full (2 requests waiting)"}


def test_full_queue_refuses_before_the_body_is_sent(gated_service, gated_detector):
    """Shedding load costs no body reading: the 503 comes while the client has sent only its
    headers, and the connection is closed (the body left is over the drain allowance)."""
    service = gated_service(max_batch_size=1, max_queue_size=1)
    gated_detector.gate.clear()
    with ThreadPoolExecutor(2) as pool:
        held = [pool.submit(post_png, service.http_url, (0, 0, 20, 20), timeout=30)]
        gated_detector.entered.wait(10)
        held.append(pool.submit(post_png, service.http_url, (0, 0, 20, 20), timeout=30))
        wait_until(lambda: service.runtime.batcher.queue_depth == 1)
        host, port = service.http_url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(
                b"POST /detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                b"Content-Length: 5000000\r\n\r\n"
            )
            answer = b""  # no body sent: the answer must not wait for it
            while chunk := sock.recv(65536):
                answer += chunk
        gated_detector.gate.set()
        assert [f.result().status_code for f in held] == [200, 200]
    assert answer.startswith(b"HTTP/1.1 503 ")
    assert answer.endswith(b'{"detail":"queue is full (1 requests waiting)"}')


def test_full_queue_gives_grpc_resource_exhausted(gated_service, gated_detector):
    service = gated_service(max_batch_size=1, max_queue_size=1)
    gated_detector.gate.clear()
    with ThreadPoolExecutor(2) as pool:
        held = [pool.submit(grpc_detect, service.grpc_target, (0, 0, 20, 20))]
        gated_detector.entered.wait(10)
        held.append(pool.submit(grpc_detect, service.grpc_target, (0, 0, 20, 20)))
        wait_until(lambda: service.runtime.batcher.queue_depth == 1)
        with pytest.raises(grpc.RpcError) as raised:
            grpc_detect(service.grpc_target, (0, 0, 20, 20))
        gated_detector.gate.set()
        assert all(len(f.result().detections) == 1 for f in held)
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_expired_http_request_gets_504(gated_service, gated_detector):
    service = gated_service(max_batch_size=1, request_timeout_s=0.3)
    gated_detector.gate.clear()
    response = post_png(service.http_url, (0, 0, 20, 20), timeout=30)
    gated_detector.gate.set()
    assert response.status_code == 504
    assert "deadline exceeded" in response.json()["detail"]


def test_expired_grpc_deadline_is_dropped_before_compute(gated_service, gated_detector):
    service = gated_service(max_batch_size=1)
    gated_detector.gate.clear()
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(grpc_detect, service.grpc_target, (0, 0, 20, 20))
        gated_detector.entered.wait(10)
        with pytest.raises(grpc.RpcError) as raised:
            grpc_detect(service.grpc_target, (0, 0, 40, 40), timeout=0.3)
        gated_detector.gate.set()
        held.result()
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    grpc_detect(service.grpc_target, (0, 0, 60, 60))  # queued behind the expired one, FIFO
    assert gated_detector.batches == [1, 1]  # the held request and the last one, never the expired


def test_cancelled_grpc_call_is_dropped_before_compute(gated_service, gated_detector):
    service = gated_service(max_batch_size=1)
    gated_detector.gate.clear()
    with grpc.insecure_channel(service.grpc_target) as channel:
        stub = detector_pb2_grpc.DetectorStub(channel)
        image = encode(rectangle_image((0, 0, 20, 20)))
        held = stub.Detect.future(detector_pb2.DetectRequest(image=image), timeout=30)
        gated_detector.entered.wait(10)
        cancelled = stub.Detect.future(detector_pb2.DetectRequest(image=image), timeout=30)
        wait_until(lambda: service.runtime.batcher.queue_depth == 1)
        cancelled.cancel()
        wait_until(lambda: service.runtime.batcher.queue_depth == 0)  # removed, not computed
        gated_detector.gate.set()
        held.result()
        stub.Detect(detector_pb2.DetectRequest(image=image), timeout=30)
    assert gated_detector.batches == [1, 1]


def test_failing_batch_gives_500_and_the_service_keeps_serving(gated_service, gated_detector):
    service = gated_service()
    gated_detector.fail_next = True
    failed = post_png(service.http_url, (0, 0, 20, 20), timeout=30)
    assert failed.status_code == 500
    assert failed.json() == {
        "detail": "inference failed for this batch; the server log has the cause"
    }
    assert "injected" not in failed.text
    with pytest.raises(grpc.RpcError) as raised:
        gated_detector.fail_next = True
        grpc_detect(service.grpc_target, (0, 0, 20, 20))
    assert raised.value.code() == grpc.StatusCode.INTERNAL
    assert post_png(service.http_url, (0, 0, 20, 20), timeout=30).status_code == 200


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height 8-bit gray pixels (data: one empty row)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b""))  # fmt: skip


GOOD_PNG = encode(rectangle_image((0, 0, 20, 20)))
GOOD_JPEG = encode(rectangle_image((0, 0, 20, 20)), "JPEG")

IMG = "image/png"
BAD_INPUTS = [
    # name, body, content type (None: multipart), query, status, detail substring
    ("not_an_image", b"hello, world", IMG, {}, 400, "not a supported image"),
    ("gif_format", b"GIF89a\x01\x00\x01\x00;", "image/gif", {}, 400, "not a supported image"),
    ("truncated_jpeg", GOOD_JPEG[: len(GOOD_JPEG) // 2], "image/jpeg", {}, 400, "truncated"),
    ("corrupt_png", GOOD_PNG[:60] + b"\x00" * 40 + GOOD_PNG[100:], IMG, {}, 400, "corrupt"),
    ("zero_bytes", b"", IMG, {}, 400, "empty image"),
    ("decompression_bomb", png_declaring(30000, 30000), IMG, {}, 413, "declares"),
    ("over_byte_limit", b"\x89PNG" + b"\x00" * 300_001, IMG, {}, 413, "limit of 300000 bytes"),
    ("text_content_type", GOOD_PNG, "text/plain", {}, 415, "unsupported content type"),
    ("multipart_without_image", b"", None, {}, 422, "no file field named 'image'"),
    ("score_above_1", GOOD_PNG, IMG, {"score_threshold": 2}, 422, "score_threshold"),
    ("score_threshold_text", GOOD_PNG, IMG, {"score_threshold": "x"}, 422, "score_threshold"),
    ("max_detections_zero", GOOD_PNG, IMG, {"max_detections": 0}, 422, "max_detections"),
    ("unknown_class", GOOD_PNG, IMG, {"classes": "dragon"}, 422, "unknown class 'dragon'"),
]  # fmt: skip


def send_bad(url: str, body: bytes, content_type: str | None, query: dict) -> httpx.Response:
    if content_type is None:
        return httpx.post(
            f"{url}/detect", data={"other": "x"}, files={"f": ("f", body)}, timeout=30
        )
    headers = {"content-type": content_type}
    return httpx.post(f"{url}/detect", content=body, headers=headers, params=query, timeout=30)


def test_each_bad_input_gets_its_status_while_a_good_request_in_flight_succeeds(
    gated_service, gated_detector
):
    service = gated_service(max_image_bytes=300_000, max_image_pixels=4_000_000)
    gated_detector.gate.clear()
    with ThreadPoolExecutor(1) as pool:
        good = pool.submit(post_png, service.http_url, (40, 20, 100, 80), timeout=30)
        gated_detector.entered.wait(10)
        outcomes = {
            name: send_bad(service.http_url, body, content_type, query)
            for name, body, content_type, query, _, _ in BAD_INPUTS
        }
        gated_detector.gate.set()
        good_response = good.result()
    for name, _, _, _, status, detail in BAD_INPUTS:
        response = outcomes[name]
        assert response.status_code == status, f"{name}: {response.status_code} {response.text}"
        assert detail in str(response.json()["detail"]), f"{name}: {response.text}"
    assert good_response.status_code == 200
    box = good_response.json()["detections"][0]["box"]
    assert (box["xmin"], box["ymin"], box["xmax"], box["ymax"]) == pytest.approx((40, 20, 100, 80))


def test_metrics_export_in_flight_requests_of_both_protocols(gated_service, gated_detector):
    service = gated_service(max_batch_size=1, max_queue_size=8)
    in_flight = ("ssd_in_flight_requests", ())
    assert metric_samples(service.http_url)[in_flight] == 0
    gated_detector.gate.clear()
    with ThreadPoolExecutor(3) as pool:
        held = [
            pool.submit(post_png, service.http_url, (0, 0, 20, 20), timeout=30),
            pool.submit(post_png, service.http_url, (0, 0, 30, 30), timeout=30),
            pool.submit(grpc_detect, service.grpc_target, (0, 0, 40, 40)),
        ]
        # One request holds the model, two wait in the queue: all three are in flight.
        gated_detector.entered.wait(10)
        wait_until(lambda: service.runtime.batcher.queue_depth == 2)
        assert metric_samples(service.http_url)[in_flight] == 3
        gated_detector.gate.set()
        for future in held:
            future.result()
    assert metric_samples(service.http_url)[in_flight] == 0
