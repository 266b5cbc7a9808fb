"""Bounded HTTP, as a hostile or broken client meets it (quick forms of the issue's cases):
slow headers, dripped or short bodies, an oversize chunked multipart stream, uploads beyond the
in-flight budget, ambiguous framing, too many connections. Each asserts the documented answer,
that a good request sent meanwhile is answered, and that memory and disk return to baseline."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from service.errors import DeadlineExceededError
from service.runtime import DetectParams, Runtime
from tests.service.conftest import ServiceHarness, encode, make_settings, rectangle_image

BOX = (40, 20, 100, 80)
GOOD_PNG = encode(rectangle_image(BOX))
LIMITS = {
    "max_image_bytes": 450_000,
    "http_header_timeout_s": 0.5,
    "http_body_timeout_s": 1.0,
    "http_max_in_flight": 4,
    "http_max_in_flight_bytes": 1_000_000,
    "max_decoded_bytes": 3_000_000,
}


@pytest.fixture(scope="module")
def limited(oracle_detector) -> Iterator[ServiceHarness]:
    harness = ServiceHarness(make_settings(**LIMITS), loader=lambda: oracle_detector).start()
    yield harness
    harness.stop()


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def connect(harness: ServiceHarness) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", harness.http_port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_response(sock: socket.socket, timeout_s: float = 10) -> tuple[int, dict[str, str], bytes]:
    """(status, lower-cased headers, body) of one HTTP/1.1 response with a Content-Length."""
    sock.settimeout(timeout_s)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed without a response: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    while len(body) < int(headers.get("content-length", "0")):
        body += sock.recv(65536)
    return int(lines[0].split()[1]), headers, body


def closed_by_server(sock: socket.socket, timeout_s: float = 10) -> bool:
    sock.settimeout(timeout_s)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def assert_good_request_answered(harness: ServiceHarness) -> None:
    response = httpx.post(
        f"{harness.http_url}/detect",
        content=GOOD_PNG,
        headers={"content-type": "image/png"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    box = response.json()["detections"][0]["box"]
    assert np.allclose([box["xmin"], box["ymin"], box["xmax"], box["ymax"]], BOX, atol=0.5)


def assert_budget_released(harness: ServiceHarness) -> None:
    budget = harness.app.state.in_flight
    deadline = time.monotonic() + 10
    while (budget.requests, budget.bytes) != (0, 0):
        assert time.monotonic() < deadline, (budget.requests, budget.bytes)
        time.sleep(0.01)


def test_partial_headers_are_closed_after_the_header_timeout(limited):
    slow = [connect(limited) for _ in range(10)]
    for sock in slow:
        sock.sendall(b"POST /detect HTTP/1.1\r\nHost: x\r\nContent-Ty")
    assert_good_request_answered(limited)
    started = time.monotonic()
    assert all(closed_by_server(sock) for sock in slow)
    assert time.monotonic() - started < 5  # 0.5 s timeout, not the 10 s of the socket
    for sock in slow:
        sock.close()


def test_silent_connection_is_closed_after_the_header_timeout(limited):
    with connect(limited) as sock:
        assert closed_by_server(sock)


@pytest.mark.parametrize("sent", [b"", b"\x89PNG\r\n"])
def test_body_shorter_than_its_content_length_gets_408(limited, sent):
    with connect(limited) as sock:
        sock.sendall(
            b"POST /detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            b"Content-Length: 1000\r\n\r\n" + sent
        )
        assert_good_request_answered(limited)
        status, headers, body = read_response(sock)
    assert status == 408
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {
        "detail": "request body not received within 1 s; send it faster or in full"
    }
    assert_budget_released(limited)


def test_dripped_body_gets_408_at_the_body_timeout(limited):
    with connect(limited) as sock:
        sock.sendall(
            b"POST /detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        started = time.monotonic()
        status = None
        while status is None and time.monotonic() - started < 10:
            sock.sendall(b"1\r\nx\r\n")  # one byte every 50 ms: never finishing
            readable, _, _ = select.select([sock], [], [], 0.05)
            if readable:
                status, _, body = read_response(sock)
    assert status == 408
    assert "not received within 1 s" in json.loads(body)["detail"]


def multipart_head(boundary: bytes) -> bytes:
    return (
        b"--" + boundary + b"\r\n"
        b'Content-Disposition: form-data; name="image"; filename="big.png"\r\n'
        b"Content-Type: image/png\r\n\r\n"
    )


def test_oversize_chunked_multipart_stream_is_refused_while_streaming(limited):
    """Up to 64 MiB offered in 64 KiB chunks: 413 arrives while the client is still sending,
    after little more than the 450 kB limit went in; nothing is spooled to disk."""
    temp_dir = tempfile.gettempdir()
    files_before = set(os.listdir(temp_dir))
    rss_before = rss_bytes()
    boundary = b"fuzzboundary"
    chunk = os.urandom(64 * 1024)
    sent = 0
    with connect(limited) as sock:
        sock.sendall(
            b"POST /detect HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: multipart/form-data; boundary=" + boundary + b"\r\n\r\n"
        )
        head = multipart_head(boundary)
        sock.sendall(b"%x\r\n%s\r\n" % (len(head), head))
        sock.setblocking(False)
        response = None
        while sent < 64 * 1024 * 1024 and response is None:
            readable, writable, _ = select.select([sock], [sock], [], 5)
            if readable:
                response = read_response(sock)
            elif writable:
                with contextlib.suppress(BlockingIOError):
                    sent += sock.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            else:
                break  # the server stopped reading and has not answered: fail below
    assert response is not None, f"no answer after {sent} bytes"
    status, headers, body = response
    assert status == 413
    assert json.loads(body) == {"detail": "image is over the limit of 450000 bytes"}
    assert headers["connection"] == "close"
    assert sent < 16 * 1024 * 1024  # kernel socket buffers hold a few MiB; 64 MiB never went
    assert_good_request_answered(limited)
    assert set(os.listdir(temp_dir)) <= files_before
    assert rss_bytes() - rss_before < 32 * 1024 * 1024
    assert_budget_released(limited)


def test_declared_oversize_body_is_refused_before_reading(limited):
    with connect(limited) as sock:
        sock.sendall(
            b"POST /detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            b"Content-Length: 1073741824\r\n\r\n"
        )
        status, headers, body = read_response(sock)
        assert closed_by_server(sock)
    assert status == 413
    assert headers["connection"] == "close"
    assert "1073741824 bytes, over the limit of 450000 bytes" in json.loads(body)["detail"]


def test_a_client_still_sending_after_an_early_413_reads_the_answer(limited):
    """A client that sends its whole (oversize) body before reading, as most do: the server
    answered 413 before reading the body and closed; closing a socket with unread data sends
    a reset that destroys the answer unless the server lingers (reads and drops the rest)."""
    body = os.urandom(3 * 1024 * 1024)
    with connect(limited) as sock:
        sock.sendall(
            b"POST /detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        time.sleep(0.3)  # the 413 is sent and the server closes its side meanwhile
        sock.sendall(body)  # a reset would fail this (EPIPE / ECONNRESET) or the read below
        status, headers, answer = read_response(sock)
    assert status == 413
    assert headers["connection"] == "close"
    assert "over the limit of 450000 bytes" in json.loads(answer)["detail"]


def start_upload(harness: ServiceHarness, declared: int) -> socket.socket:
    """An upload that declares `declared` bytes and sends only the first 10 of them."""
    sock = connect(harness)
    sock.sendall(
        b"POST /detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
        b"Content-Length: %d\r\n\r\n\x89PNG\r\n\x1a\n\x00\x00" % declared
    )
    return sock


def test_uploads_beyond_the_in_flight_byte_budget_get_503_unread(limited):
    held = [start_upload(limited, 400_000) for _ in range(2)]  # 800 kB of the 1 MB budget
    budget = limited.app.state.in_flight
    deadline = time.monotonic() + 10
    while budget.bytes < 800_000:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with start_upload(limited, 400_000) as refused:
        status, headers, body = read_response(refused)
    assert status == 503
    assert headers["retry-after"] == "1"
    assert "too many request bytes in flight (limit 1000000 bytes)" in json.loads(body)["detail"]
    assert_good_request_answered(limited)  # a small request still fits
    for sock in held:  # the stalled uploads end at the body timeout
        assert read_response(sock)[0] == 408
        sock.close()
    assert_budget_released(limited)


def test_requests_beyond_the_in_flight_count_get_503(limited):
    held = [start_upload(limited, 1000) for _ in range(4)]
    budget = limited.app.state.in_flight
    deadline = time.monotonic() + 10
    while budget.requests < 4:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    response = httpx.post(
        f"{limited.http_url}/detect", content=GOOD_PNG, headers={"content-type": "image/png"}
    )
    assert response.status_code == 503
    assert response.json() == {"detail": "too many requests in flight (4); retry later"}
    for sock in held:
        assert read_response(sock)[0] == 408
        sock.close()
    assert_budget_released(limited)
    assert_good_request_answered(limited)


@pytest.mark.parametrize(
    "framing",
    [
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
    ],
)
def test_content_length_with_chunked_encoding_is_refused(limited, framing):
    with connect(limited) as sock:
        sock.sendall(
            b"POST /detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            + framing
            + b"\r\n5\r\nhello\r\n0\r\n\r\n"
        )
        status, headers, body = read_response(sock)
        assert closed_by_server(sock)
    assert status == 400
    assert headers["connection"] == "close"
    assert "both Content-Length and Transfer-Encoding" in json.loads(body)["detail"]


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"NOT HTTP AT ALL\r\n\r\n",
        # 20 kB of headers and no end in sight: over the 16 KiB bound on an incomplete head
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000,
    ],
)
def test_malformed_or_oversize_headers_get_400_json(limited, request_bytes):
    with connect(limited) as sock:
        sock.sendall(request_bytes)
        status, headers, body = read_response(sock)
    assert status == 400
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["detail"].startswith("malformed HTTP request")


def test_decoded_size_limit_counts_bytes_per_pixel(limited):
    gray16 = np.full((1000, 1600), 40000, np.uint16)  # 1.6 MP at 2 bytes: 3.2 MB > 3 MB
    response = httpx.post(
        f"{limited.http_url}/detect",
        content=encode(gray16),
        headers={"content-type": "image/png"},
        timeout=10,
    )
    assert response.status_code == 413
    assert response.json()["detail"] == (
        "image decodes to 3200000 bytes (1600x1000 I;16), the limit is 3000000 bytes"
    )
    gray8 = np.full((1000, 1600), 200, np.uint8)  # the same pixels at 1 byte: accepted
    response = httpx.post(
        f"{limited.http_url}/detect",
        content=encode(gray8),
        headers={"content-type": "image/png"},
        timeout=10,
    )
    assert response.status_code == 200, response.text


def test_connections_over_the_limit_get_503_json_but_probes_are_answered(oracle_detector):
    harness = ServiceHarness(
        make_settings(http_max_connections=4, http_header_timeout_s=30),
        loader=lambda: oracle_detector,
    ).start()
    try:
        idle = [connect(harness) for _ in range(4)]
        time.sleep(0.2)  # let the server accept them
        response = httpx.get(f"{harness.http_url}/model", timeout=10)
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert response.headers["connection"] == "close"
        assert response.json() == {"detail": "too many open connections (limit 4); retry later"}
        for probe in ("/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"):
            assert httpx.get(f"{harness.http_url}{probe}", timeout=10).status_code == 200, probe
        for sock in idle:
            sock.close()
        time.sleep(0.2)
        with ThreadPoolExecutor(1) as pool:
            assert pool.submit(assert_good_request_answered, harness).result() is None
    finally:
        harness.stop()


def test_request_whose_deadline_passed_in_the_decode_queue_is_never_decoded(
    oracle_detector, monkeypatch
):
    import service.images

    decoded = []
    real_decode = service.images.decode_image
    monkeypatch.setattr(
        service.images, "decode_image", lambda *a, **k: decoded.append(1) or real_decode(*a, **k)
    )
    runtime = Runtime(make_settings(decode_workers=1), loader=lambda: oracle_detector)

    async def scenario() -> BaseException | None:
        await runtime.start()
        worker_free = threading.Event()
        # The only decode worker is busy past the request's 0.2 s deadline.
        busy = runtime._decode_pool.submit(worker_free.wait, 10)
        asyncio.get_running_loop().call_later(0.5, worker_free.set)
        try:
            await runtime.detect(GOOD_PNG, DetectParams(), timeout_s=0.2)
        except DeadlineExceededError as error:
            return error
        finally:
            busy.result()
            await runtime.drain()
        return None

    error = asyncio.run(scenario())
    assert error is not None and "before its image was decoded" in error.message
    assert decoded == []


def test_concurrent_large_uploads_over_the_byte_budget_are_refused_unread(
    gated_service, gated_detector
):
    """The memory case in quick form: 12 uploads of 400 kB at once against a 1 MB budget while
    the model is held: two are admitted, ten get 503 at once, a small request still fits, and
    resident memory ends near where it started."""
    service = gated_service(max_image_bytes=450_000, http_max_in_flight_bytes=1_000_000)
    noise = np.random.default_rng(0).integers(0, 256, (300, 440, 3), dtype=np.uint8)
    big = encode(noise)  # incompressible: ~396 kB
    assert 350_000 < len(big) < 450_000
    rss_before = rss_bytes()
    budget = service.app.state.in_flight
    gated_detector.gate.clear()

    def post(body: bytes) -> httpx.Response:
        return httpx.post(
            f"{service.http_url}/detect", content=body, headers={"content-type": "image/png"},
            timeout=30,
        )  # fmt: skip

    with ThreadPoolExecutor(13) as pool:
        uploads = [pool.submit(post, big) for _ in range(12)]
        deadline = time.monotonic() + 20
        while sum(f.done() for f in uploads) < 10:  # the refused ten return while the gate holds
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert (budget.requests, budget.bytes) == (2, 2 * len(big))
        small = pool.submit(post, GOOD_PNG)
        while budget.requests < 3:
            assert time.monotonic() < deadline and not small.done()
            time.sleep(0.01)
        gated_detector.gate.set()
        statuses = sorted(f.result().status_code for f in uploads)
        small_status = small.result().status_code
    assert statuses == [200] * 2 + [503] * 10
    assert small_status == 200
    assert_budget_released(service)
    assert rss_bytes() - rss_before < 64 * 1024 * 1024
