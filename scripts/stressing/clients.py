"""Clients of the stress scenarios: raw HTTP/1.1 over sockets (cheap enough that the load
generator does not starve the service it shares the CPU with), a periodic probe that plays
the "concurrent good request", and latency summaries."""

from __future__ import annotations

import asyncio
import random
import socket
import threading
import time
from collections.abc import Callable

import numpy as np


def request_bytes(
    method: str, path: str, body: bytes = b"", content_type: str = "", keep_alive: bool = False
) -> bytes:
    """An HTTP/1.1 request with a Content-Length body."""
    head = [f"{method} {path} HTTP/1.1", "Host: stress"]
    if content_type:
        head.append(f"Content-Type: {content_type}")
    if body or method == "POST":
        head.append(f"Content-Length: {len(body)}")
    head.append("Connection: keep-alive" if keep_alive else "Connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def http_request(
    host: str,
    port: int,
    method: str,
    path: str,
    body: bytes = b"",
    content_type: str = "",
    timeout: float = 10.0,
) -> tuple[int, bytes, float]:
    """One request on a fresh connection.

    Returns:
        (status, or 0 on a transport error or timeout; response body; seconds taken).
    """
    started = time.perf_counter()
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(request_bytes(method, path, body, content_type))
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    except OSError:
        return 0, b"", time.perf_counter() - started
    response = b"".join(chunks)
    head, _, payload = response.partition(b"\r\n\r\n")
    try:
        status = int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        status = 0
    return status, payload, time.perf_counter() - started


class Probe:
    """Calls `send()` every `interval_s` in a thread; `send` returns (ok, seconds)."""

    def __init__(self, send: Callable[[], tuple[bool, float]], interval_s: float) -> None:
        self.send = send
        self.interval_s = interval_s
        self.latencies_s: list[float] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        while not self._stop.is_set():
            ok, seconds = self.send()
            self.latencies_s.append(seconds)
            self.failures += not ok
            self._stop.wait(max(self.interval_s - seconds, 0.0))

    def summary(self, prefix: str) -> dict[str, float]:
        return {
            f"{prefix}_count": len(self.latencies_s),
            f"{prefix}_failures": self.failures,
            **percentiles_ms(self.latencies_s, prefix),
        }


def percentiles_ms(seconds: list[float], prefix: str) -> dict[str, float]:
    """{prefix_p50_ms, prefix_p99_ms, prefix_max_ms}; NaN when there is no sample."""
    if not seconds:
        nan = float("nan")
        return {f"{prefix}_p50_ms": nan, f"{prefix}_p99_ms": nan, f"{prefix}_max_ms": nan}
    values = np.asarray(seconds) * 1000.0
    return {
        f"{prefix}_p50_ms": round(float(np.percentile(values, 50)), 2),
        f"{prefix}_p99_ms": round(float(np.percentile(values, 99)), 2),
        f"{prefix}_max_ms": round(float(values.max()), 2),
    }


async def keep_alive_client(
    host: str,
    port: int,
    request: bytes,
    stop_at: float,
    record: Callable[[int, float], None],
    honour_retry_after: bool = False,
) -> None:
    """Send `request` (keep-alive) back to back until `stop_at` (loop time), reconnecting when
    the server closes; `record(status, seconds)` per answer, status 0 for a transport error.
    With `honour_retry_after`, wait as a 503's `Retry-After` says before the next request, as
    a well-behaved client does (`retry_pause_s`); else hammer."""
    loop = asyncio.get_running_loop()
    while loop.time() < stop_at:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            record(0, 0.0)
            await asyncio.sleep(0.01)
            continue
        try:
            while loop.time() < stop_at:
                started = time.perf_counter()
                writer.write(request)
                status, headers = await _read_response(reader)
                record(status, time.perf_counter() - started)
                if headers.get("connection", "").lower() == "close":
                    break
                if honour_retry_after and status == 503:
                    await asyncio.sleep(retry_pause_s(float(headers.get("retry-after", "1"))))
        except (OSError, asyncio.IncompleteReadError, ValueError):
            record(0, 0.0)
        finally:
            writer.close()


def retry_pause_s(retry_after_s: float) -> float:
    """How long a well-behaved client waits after being told to retry after `retry_after_s`:
    that long plus up to half of it again at random. Clients of a fleet do not retry in step
    (gRPC's retry policy and the usual back-off libraries jitter their pauses), and none
    comes back earlier than it was asked to."""
    return retry_after_s * (1.0 + 0.5 * random.random())


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """(status, headers with lower-case names) of one response; its body is read and dropped."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    lines = head.split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers


async def send_and_hang_up(
    host: str, port: int, request: bytes, stop_at: float, per_second: float | None = None
) -> int:
    """Connect, send the whole `request`, close without reading; repeat until `stop_at`, at
    most `per_second` times a second (None: as fast as possible).

    Returns:
        How many requests were sent.
    """
    loop = asyncio.get_running_loop()
    sent = 0
    next_at = loop.time()
    while loop.time() < stop_at:
        if per_second is not None:
            next_at += 1.0 / per_second
            await asyncio.sleep(max(next_at - loop.time(), 0.0))
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(0.01)
            continue
        writer.write(request)
        try:
            await writer.drain()
            sent += 1
        except OSError:
            pass
        writer.close()
    return sent
