"""Work for a client that went away is dropped: never decoded or computed, counted (499 /
CANCELLED), summarised in the log once per second, never one traceback per request."""

from __future__ import annotations

import logging
import socket
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import grpc
import pytest

from service._generated import detector_pb2, detector_pb2_grpc
from tests.service.conftest import encode, rectangle_image, wait_until
from tests.service.test_load import metric_samples, post_png


def send_then_hang_up(http_url: str, body: bytes) -> socket.socket:
    """Send a complete `POST /detect` on a raw connection and return the open socket."""
    address = urlsplit(http_url)
    connection = socket.create_connection((address.hostname, address.port), timeout=10)
    head = (
        "POST /detect HTTP/1.1\r\nHost: test\r\nContent-Type: image/png\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    connection.sendall(head.encode() + body)
    return connection


def http_count(service, status: str) -> float:
    key = ("ssd_requests_total", (("protocol", "http"), ("status", status)))
    return metric_samples(service.http_url).get(key, 0.0)


def test_a_queued_request_whose_client_hangs_up_leaves_the_queue_and_counts_499(
    gated_service, gated_detector
):
    service = gated_service(max_batch_size=1)
    gated_detector.gate.clear()
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(post_png, service.http_url, (0, 0, 20, 20), timeout=30)
        gated_detector.entered.wait(10)
        connection = send_then_hang_up(service.http_url, encode(rectangle_image((0, 0, 40, 40))))
        wait_until(lambda: service.runtime.batcher.queue_depth == 1)
        connection.close()
        wait_until(lambda: service.runtime.batcher.queue_depth == 0)
        wait_until(lambda: http_count(service, "499") == 1)
        gated_detector.gate.set()
        assert held.result().status_code == 200
    assert gated_detector.batches == [1]  # the abandoned request was never computed


def test_a_burst_of_aborted_requests_is_dropped_without_delaying_the_next_good_one(
    gated_service, gated_detector, caplog
):
    """60 clients send a full request and hang up while a batch runs: none is computed, each
    is counted 499, the log has one summary and no traceback, and the good request that
    follows needs only the batch in flight (and its own)."""
    caplog.set_level(logging.INFO)
    service = gated_service(max_batch_size=1, max_queue_size=8)
    gated_detector.gate.clear()
    body = encode(rectangle_image((0, 0, 40, 40)))
    with ThreadPoolExecutor(2) as pool:
        held = pool.submit(post_png, service.http_url, (0, 0, 20, 20), timeout=30)
        gated_detector.entered.wait(10)
        for _ in range(60):
            send_then_hang_up(service.http_url, body).close()
        wait_until(lambda: http_count(service, "499") == 60)
        good = pool.submit(post_png, service.http_url, (10, 10, 50, 30), timeout=30)
        wait_until(lambda: service.runtime.batcher.queue_depth == 1)
        gated_detector.gate.set()
        assert held.result().status_code == 200
        answer = good.result()
    assert answer.status_code == 200
    box = answer.json()["detections"][0]["box"]
    assert [box[k] for k in ("xmin", "ymin", "xmax", "ymax")] == pytest.approx([10, 10, 50, 30])
    assert gated_detector.batches == [1, 1]  # the held request and the good one, nothing else
    assert http_count(service, "503") == 0  # the aborted ones did not fill the 8-slot queue
    wait_until(lambda: any("client went away" in r.getMessage() for r in caplog.records))
    summaries = [r.getMessage() for r in caplog.records if "client went away" in r.getMessage()]
    assert sum(int(line.split()[0]) for line in summaries) == 60
    assert len(summaries) <= 3  # one line per second of the burst, not one per request
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []


def test_a_cancelled_grpc_call_counts_cancelled(gated_service, gated_detector):
    service = gated_service(max_batch_size=1)
    gated_detector.gate.clear()
    image = encode(rectangle_image((0, 0, 20, 20)))
    with grpc.insecure_channel(service.grpc_target) as channel:
        stub = detector_pb2_grpc.DetectorStub(channel)
        held = stub.Detect.future(detector_pb2.DetectRequest(image=image), timeout=30)
        gated_detector.entered.wait(10)
        cancelled = stub.Detect.future(detector_pb2.DetectRequest(image=image), timeout=30)
        wait_until(lambda: service.runtime.batcher.queue_depth == 1)
        cancelled.cancel()
        key = ("ssd_requests_total", (("protocol", "grpc"), ("status", "CANCELLED")))
        wait_until(lambda: metric_samples(service.http_url).get(key) == 1)
        gated_detector.gate.set()
        held.result()
    dropped = ("ssd_dropped_requests_total", (("reason", "cancelled"),))
    assert metric_samples(service.http_url)[dropped] == 1
    assert gated_detector.batches == [1]
