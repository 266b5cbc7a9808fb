"""The hostile-client scenarios of issue 12, each bounded in time and on loopback only.

Each scenario returns one row: what was sent, answered, wrong and missing, the latency of a
concurrent good request (the probe), the service's RSS before and after, and its own details.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from service_process import ServiceProcess

from stressing.clients import (
    Probe,
    http_request,
    keep_alive_client,
    percentiles_ms,
    request_bytes,
    retry_pause_s,
    send_and_hang_up,
)

INVALID_ARGUMENT = 3  # grpc.StatusCode.INVALID_ARGUMENT.value[0]


@dataclass(frozen=True)
class Sizes:
    """How hard each scenario pushes; `QUICK` for the test suite, `FULL` for the README."""

    streams: int
    items_per_stream: int
    unary_calls: int
    abort_s: float
    abort_clients: int
    abort_rate: float  # aborted requests per second, all clients together
    connections: int  # idle connections opened on each port
    hold_s: float
    overload_s: float
    overload_http_clients: int
    overload_grpc_calls: int
    baseline_probes: int


QUICK = Sizes(2, 100, 40, 1.5, 4, 500.0, 300, 1.5, 1.5, 96, 32, 15)
FULL = Sizes(4, 1000, 1000, 10.0, 8, 1000.0, 3000, 8.0, 10.0, 160, 64, 40)


def scene_jpegs(count: int, seed: int) -> list[bytes]:
    """`count` different synthetic shapes scenes (192 x 320), JPEG quality 90."""
    from PIL import Image

    from ssd_core.data.shapes import render_scene

    images = []
    for index in range(count):
        scene = render_scene(np.random.default_rng(seed + index), height=192, width=320)
        buffer = io.BytesIO()
        Image.fromarray(scene.image).save(buffer, format="JPEG", quality=90)
        images.append(buffer.getvalue())
    return images


def detect_probe(server: ServiceProcess, image: bytes) -> Probe:
    """A good `POST /detect` on a fresh connection every 100 ms: the concurrent good request."""

    def send() -> tuple[bool, float]:
        status, _, seconds = http_request(
            server.host, server.http_port, "POST", "/detect", image, "image/jpeg", timeout=60
        )
        return status == 200, seconds

    return Probe(send, interval_s=0.1)


def unloaded_latency(server: ServiceProcess, image: bytes, count: int) -> dict[str, float]:
    """The probe's latency with nothing else running."""
    seconds = []
    for _ in range(count):
        status, _, elapsed = http_request(
            server.host, server.http_port, "POST", "/detect", image, "image/jpeg", timeout=60
        )
        if status != 200:
            raise RuntimeError(f"unloaded probe answered {status}")
        seconds.append(elapsed)
    return percentiles_ms(seconds, "unloaded")


# --- 1. stream integrity ------------------------------------------------------------------


def _answer(response: Any) -> tuple:
    """A response's result, comparable across batch compositions (detections sorted)."""
    detections = sorted(
        (d.class_id, d.score, d.box.xmin, d.box.ymin, d.box.xmax, d.box.ymax)
        for d in response.detections
    )
    return (response.image_width, response.image_height, tuple(detections))


def _same(got: tuple, expected: tuple) -> bool:
    """Same size and detections: labels equal, scores within 1e-3, boxes within 0.5 px (the
    forward pass of one image may differ in the last bits with the batch it ran in)."""
    if got[:2] != expected[:2] or len(got[2]) != len(expected[2]):
        return False
    return all(
        a[0] == b[0] and abs(a[1] - b[1]) <= 1e-3 and max(abs(np.subtract(a[2:], b[2:]))) <= 0.5
        for a, b in zip(got[2], expected[2], strict=True)
    )


def stream_integrity(server: ServiceProcess, sizes: Sizes, max_image_bytes: int) -> dict:
    """Streams of distinct images with bad items mixed in, unary calls at the same time, one
    stream with an undecodable message and one with a message over the transport limit."""
    import grpc

    from service._generated import detector_pb2, detector_pb2_grpc

    count = sizes.streams * sizes.items_per_stream + sizes.unary_calls
    images = scene_jpegs(count, seed=10_000)
    ids = [f"img-{i}" for i in range(count)]
    with grpc.insecure_channel(server.grpc_target) as channel, ThreadPoolExecutor(4) as pool:
        stub = detector_pb2_grpc.DetectorStub(channel)
        references = list(  # each image's answer, taken before the flood
            pool.map(
                lambda i: _answer(
                    stub.Detect(detector_pb2.DetectRequest(image=images[i]), timeout=60)
                ),
                range(count),
            )
        )
    expected = dict(zip(ids, references, strict=True))
    payload = dict(zip(ids, images, strict=True))
    bad = {
        "bad-image": detector_pb2.DetectRequest(request_id="bad-image", image=b"not an image"),
        "bad-class": detector_pb2.DetectRequest(
            request_id="bad-class", image=images[0], classes=["²"]
        ),
        "over-limit": detector_pb2.DetectRequest(
            request_id="over-limit", image=b"\xff\xd8" + b"\0" * max_image_bytes
        ),
    }
    unary_ids = ids[: sizes.unary_calls]
    stream_ids = [ids[sizes.unary_calls :][k :: sizes.streams] for k in range(sizes.streams)]
    for k, name in enumerate(bad):
        stream_ids[k % sizes.streams].insert(len(stream_ids[k % sizes.streams]) // 2, name)

    def requests(names: list[str]):
        for rid in names:
            yield bad.get(rid) or detector_pb2.DetectRequest(request_id=rid, image=payload[rid])

    def one_stream(names: list[str]) -> tuple[list, str]:
        with grpc.insecure_channel(server.grpc_target) as channel:
            call = detector_pb2_grpc.DetectorStub(channel).StreamDetect(
                requests(names), timeout=600
            )
            responses: list = []
            with contextlib.suppress(grpc.RpcError):  # the status is read below
                responses.extend(call)
            return responses, call.code().name

    refusals = Counter[str]()

    def unary_call(stub: Any, rid: str) -> Any:
        """Detect, retried after a short pause while the queue is full, as the README tells
        clients to (the streams' paced items may hold every queue slot; new calls are refused)."""
        request = detector_pb2.DetectRequest(request_id=rid, image=payload[rid])
        while True:
            try:
                return stub.Detect(request, timeout=600)
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                    raise
                refusals[rid] += 1
                time.sleep(0.05)

    rss_before = server.rss_mb()
    started = time.perf_counter()
    with detect_probe(server, images[0]) as probe, ThreadPoolExecutor(8 + sizes.streams) as pool:
        streams = [pool.submit(one_stream, names) for names in stream_ids]
        with grpc.insecure_channel(server.grpc_target) as channel:
            stub = detector_pb2_grpc.DetectorStub(channel)
            unary = [pool.submit(unary_call, stub, rid) for rid in unary_ids]
            responses = [r for future in unary for r in [future.result()]]
        statuses = []
        for future in streams:
            stream_responses, code = future.result()
            responses += stream_responses
            statuses.append(code)
        broken = _broken_streams(server, images[1], max_image_bytes)
    elapsed = time.perf_counter() - started

    answers = Counter(r.request_id for r in responses)
    wrong = sum(
        1
        for r in responses
        if r.request_id in expected
        and (r.HasField("error") or not _same(_answer(r), expected[r.request_id]))
    )
    bad_answered_as_errors = sum(
        1
        for r in responses
        if r.request_id in bad and r.HasField("error") and r.error.code == INVALID_ARGUMENT
    )
    sent = count + len(bad)
    return {
        "scenario": "stream",
        "sent": sent,
        "answered": sum(answers.values()),
        "wrong": wrong,
        "missing": sum(1 for rid in [*ids, *bad] if answers[rid] == 0),
        "duplicated": sum(1 for n in answers.values() if n > 1),
        "bad_items_answered_invalid_argument": bad_answered_as_errors,
        "bad_items": len(bad),
        "unary_queue_full_retries": sum(refusals.values()),
        "stream_statuses": statuses,
        **broken,
        "seconds": round(elapsed, 1),
        "items_per_s": round(sent / elapsed, 1),
        **probe.summary("probe"),
        "rss_before_mb": round(rss_before, 1),
        "rss_after_mb": round(server.rss_mb(), 1),
    }


def _broken_streams(server: ServiceProcess, image: bytes, max_image_bytes: int) -> dict:
    """20 good items then an undecodable message (then 5 more); 20 good items then a message
    over the transport limit. Returns the final statuses and how many good items were answered."""
    import grpc

    from service._generated import detector_pb2

    def good(name: str) -> bytes:
        return detector_pb2.DetectRequest(request_id=name, image=image).SerializeToString()

    def raw_stream(messages: list[bytes]) -> tuple[int, str]:
        options = [("grpc.max_send_message_length", 64 * 1024 * 1024)]
        with grpc.insecure_channel(server.grpc_target, options=options) as channel:
            call = channel.stream_stream(
                "/ssd.v1.Detector/StreamDetect",
                request_serializer=None,
                response_deserializer=detector_pb2.DetectResponse.FromString,
            )(iter(messages), timeout=120)
            answered = 0
            with contextlib.suppress(grpc.RpcError):  # the status is read below
                for response in call:
                    answered += not response.HasField("error")
            return answered, call.code().name

    malformed = b"\x0a\xff\xff\xff\xff\x0f"  # field 1 whose length runs past the end
    huge = detector_pb2.DetectRequest(request_id="huge", image=b"\0" * (3 * max_image_bytes))
    before = [good(f"before-{i}") for i in range(20)]
    answered_m, status_m = raw_stream([*before, malformed, *(good(f"after-{i}") for i in range(5))])
    answered_h, status_h = raw_stream([*before, huge.SerializeToString()])
    return {
        "malformed_stream_status": status_m,
        "malformed_stream_answered_before": f"{answered_m}/20",
        "oversize_stream_status": status_h,
        "oversize_stream_answered_before": f"{answered_h}/20",
    }


# --- 2. aborted requests ------------------------------------------------------------------


def _http_count(metrics: dict, status: str) -> float:
    return metrics.get(("ssd_requests_total", (("protocol", "http"), ("status", status))), 0.0)


def aborted_requests(server: ServiceProcess, sizes: Sizes, max_rate: bool = False) -> dict:
    """Clients that send a whole `POST /detect` and hang up at once: `abort_rate` a second,
    or as fast as they can (`max_rate`, which measures the event loop's connection capacity
    on a machine that also runs the clients)."""
    image = scene_jpegs(1, seed=1)[0]
    baseline = unloaded_latency(server, image, sizes.baseline_probes)
    before = server.metrics()
    log_offset = server.log_size()
    rss_before = server.rss_mb()
    request = request_bytes("POST", "/detect", image, "image/jpeg")

    async def burst() -> int:
        stop_at = asyncio.get_running_loop().time() + sizes.abort_s
        counts = await asyncio.gather(
            *(
                send_and_hang_up(
                    server.host,
                    server.http_port,
                    request,
                    stop_at,
                    None if max_rate else sizes.abort_rate / sizes.abort_clients,
                )
                for _ in range(sizes.abort_clients)
            )
        )
        return sum(counts)

    with detect_probe(server, image) as probe:
        sent = asyncio.run(burst())
    time.sleep(1.5)  # the last requests finish; the once-per-second summary is written
    after = server.metrics()
    log = server.log_since(log_offset)
    batches = after.get(("ssd_inference_seconds_count", ()), 0.0)
    batch_ms = 1000.0 * after.get(("ssd_inference_seconds_sum", ()), 0.0) / max(batches, 1.0)
    probe_stats = probe.summary("probe")
    counted = {
        status: _http_count(after, status) - _http_count(before, status)
        for status in ("200", "499", "503")
    }
    computed = after.get(("ssd_batch_size_sum", ()), 0.0) - before.get(
        ("ssd_batch_size_sum", ()), 0.0
    )
    return {
        "scenario": "abort (max rate)" if max_rate else "abort",
        "sent": sent,
        "rate_per_s": round(sent / sizes.abort_s, 1),
        "answered": "-",
        "wrong": "-",
        "missing": "-",
        "counted_499": int(counted["499"]),
        "counted_503": int(counted["503"]),
        "images_computed": int(computed),
        "probe_requests": probe_stats["probe_count"],
        "log_tracebacks": log.count("Traceback"),
        "log_summary_lines": log.count("client went away"),
        "log_bytes": len(log.encode()),
        **baseline,
        "batch_ms": round(batch_ms, 2),
        "probe_bound_ms": round(2 * baseline["unloaded_p99_ms"] + batch_ms, 2),
        **probe_stats,
        "rss_before_mb": round(rss_before, 1),
        "rss_after_mb": round(server.rss_mb(), 1),
    }


# --- 3. connection flood ------------------------------------------------------------------


def connection_flood(server: ServiceProcess, sizes: Sizes) -> dict:
    """`connections` idle TCP connections on each port, held for `hold_s`, while health is
    probed on fresh connections (HTTP `/healthz` every 50 ms, gRPC health every 200 ms)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    fds_before, threads_before, rss_before = server.open_fds(), server.threads(), server.rss_mb()
    held: list[socket.socket] = []
    refused = 0
    for port in (server.http_port, server.grpc_port):
        for _ in range(sizes.connections):
            try:
                held.append(socket.create_connection((server.host, port), timeout=5))
            except OSError:
                refused += 1

    def healthz() -> tuple[bool, float]:
        status, _, seconds = http_request(
            server.host, server.http_port, "GET", "/healthz", timeout=10
        )
        return status == 200, seconds

    def grpc_health() -> tuple[bool, float]:
        started = time.perf_counter()
        with grpc.insecure_channel(server.grpc_target) as channel:
            try:
                response = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=5
                )
                ok = response.status == health_pb2.HealthCheckResponse.SERVING
            except grpc.RpcError:
                ok = False
        return ok, time.perf_counter() - started

    time.sleep(0.2)
    fds_during = server.open_fds()
    with Probe(healthz, 0.05) as http_probe, Probe(grpc_health, 0.2) as grpc_probe:
        time.sleep(sizes.hold_s)
    closed_by_server = sum(1 for sock in held if _closed_by_peer(sock))
    for sock in held:
        sock.close()
    fds_after = _settled(server.open_fds, fds_before)
    return {
        "scenario": "connections",
        "sent": 2 * sizes.connections,
        "answered": "-",
        "wrong": "-",
        "missing": "-",
        "refused_at_connect": refused,
        "closed_by_server": closed_by_server,
        **http_probe.summary("healthz"),
        **grpc_probe.summary("grpc_health"),
        "probe_p99_ms": http_probe.summary("x")["x_p99_ms"],
        "fds_before": fds_before,
        "fds_during": fds_during,
        "fds_after": fds_after,
        "threads_before": threads_before,
        "threads_after": server.threads(),
        "rss_before_mb": round(rss_before, 1),
        "rss_after_mb": round(server.rss_mb(), 1),
    }


def _closed_by_peer(sock: socket.socket) -> bool:
    """Whether the server has closed (or answered) this idle connection."""
    sock.setblocking(False)
    try:
        sock.recv(1 << 16)  # b"": closed; bytes: an answer such as a 503 before closing
    except BlockingIOError:
        return False
    except OSError:
        pass
    return True


def _settled(read: Any, target: float, timeout_s: float = 15.0) -> int:
    """`read()` once it is back to `target` (or after `timeout_s`)."""
    end = time.monotonic() + timeout_s
    value = read()
    while value > target and time.monotonic() < end:
        time.sleep(0.25)
        value = read()
    return int(value)


RETRY_AFTER_S = 1.0  # the gRPC clients' pause after RESOURCE_EXHAUSTED (HTTP: Retry-After)
RAMP_S = 1.0  # the overload clients join over this long, as a fleet's clients arrive

# --- 4. overload --------------------------------------------------------------------------


def overload(server: ServiceProcess, sizes: Sizes, hammer: bool = False) -> dict:
    """More concurrent HTTP clients and gRPC calls than the queue holds, for `overload_s`:
    how fast the refusals (503 / RESOURCE_EXHAUSTED) come back.

    The clients behave as the README asks: after a 503 they wait its `Retry-After`, after
    RESOURCE_EXHAUSTED one second (each plus a random jitter of up to half, `retry_pause_s`),
    and they join at random times during the first `RAMP_S`: a service's clients do not all
    connect in the same millisecond. With `hammer` they join at once (a herd) and retry at
    once: the refusals then come
    back as fast as the two cores, shared with the clients, can turn requests away (Little's
    law: latency = clients / refusals per second), which measures the load generator as much
    as the service."""
    image = scene_jpegs(1, seed=2)[0]
    rss_before = server.rss_mb()
    latencies: dict[str, list[float]] = {}
    lock = threading.Lock()

    def record(status: str, seconds: float) -> None:
        with lock:
            latencies.setdefault(status, []).append(seconds)

    async def flood() -> None:
        import grpc

        from service._generated import detector_pb2, detector_pb2_grpc

        stop_at = asyncio.get_running_loop().time() + sizes.overload_s
        request = request_bytes("POST", "/detect", image, "image/jpeg", keep_alive=True)
        async with grpc.aio.insecure_channel(server.grpc_target) as channel:
            stub = detector_pb2_grpc.DetectorStub(channel)

            async def grpc_client() -> None:
                message = detector_pb2.DetectRequest(image=image)
                while asyncio.get_running_loop().time() < stop_at:
                    started = time.perf_counter()
                    try:
                        await stub.Detect(message, timeout=30)
                        code = "OK"
                    except grpc.RpcError as error:
                        code = error.code().name
                    record(f"grpc {code}", time.perf_counter() - started)
                    if code == "RESOURCE_EXHAUSTED" and not hammer:
                        await asyncio.sleep(retry_pause_s(RETRY_AFTER_S))

            async def joining(client: Awaitable[None]) -> None:
                await asyncio.sleep(0.0 if hammer else random.uniform(0.0, RAMP_S))
                await client

            await asyncio.gather(
                *(
                    joining(
                        keep_alive_client(
                            server.host,
                            server.http_port,
                            request,
                            stop_at,
                            lambda status, s: record(f"http {status}", s),
                            honour_retry_after=not hammer,
                        )
                    )
                    for _ in range(sizes.overload_http_clients)
                ),
                *(joining(grpc_client()) for _ in range(sizes.overload_grpc_calls)),
            )

    with detect_probe(server, image) as probe:
        asyncio.run(flood())
    time.sleep(0.5)
    by_status = {status: len(values) for status, values in sorted(latencies.items())}
    return {
        "scenario": "overload (hammer)" if hammer else "overload",
        "sent": sum(by_status.values()),
        "answered": sum(n for status, n in by_status.items() if not status.endswith(" 0")),
        "wrong": "-",
        "missing": by_status.get("http 0", 0),
        "by_status": by_status,
        **percentiles_ms(latencies.get("http 503", []), "http_503"),
        **percentiles_ms(latencies.get("grpc RESOURCE_EXHAUSTED", []), "grpc_exhausted"),
        **percentiles_ms(latencies.get("http 200", []), "http_200"),
        **probe.summary("probe"),
        "rss_before_mb": round(rss_before, 1),
        "rss_after_mb": round(server.rss_mb(), 1),
    }


SCENARIOS: dict[str, Callable[..., dict[Any, Any]]] = {
    "stream": stream_integrity,
    "abort": aborted_requests,
    "abort-max": lambda server, sizes: aborted_requests(server, sizes, max_rate=True),
    "connections": connection_flood,
    "overload": overload,
    "overload-max": lambda server, sizes: overload(server, sizes, hammer=True),
}
