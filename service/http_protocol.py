"""The HTTP/1.1 connection protocol: uvicorn's h11 protocol with the bounds it lacks.

- A header read timeout: a connection must deliver a request's complete headers within
  `header_timeout_s` of connecting or of its previous answer, else it is closed. uvicorn's own
  keep-alive timeout only covers idle connections until their first byte, so a client that
  sends half a request line and stalls would hold its connection forever. The same bound
  applies to the rest of a body that was answered early (e.g. 413) and that uvicorn discards.
- A connection limit answered in JSON: past `max_connections` open connections, a request gets
  503 (body: `service.errors.http_error_body`) with Retry-After and `Connection: close`
  (uvicorn's `limit_concurrency` answers in plain text and also counts requests, which
  `service.in_flight` bounds). Health probes (`PROBE_PATHS`) are answered on such a connection
  too: a flood of idle connections must not make a healthy pod fail its liveness probe and be
  restarted, and a probe costs no more than the 503 would.
- uvicorn's "400 Invalid HTTP request" (malformed or over-long headers) in JSON too.
- A lingering close: a connection closed while the client may still be sending (an early 413,
  503 or 400 before the body was read) is half-closed after the answer is flushed, and what
  the client still sends is read and dropped for up to `LINGER_S` before the socket closes.
  Closing a socket with unread data makes the kernel send a reset, which can destroy the
  answer before the client has read it (the client sees ECONNRESET instead of the 413).

`uvicorn_config(app, settings)` is the server configuration with this protocol and the `SSD_HTTP_*`
timeouts; `bounded_protocol(...)` is the protocol class alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import weakref
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from service.errors import http_error_body
from service.settings import Settings

RETRY_AFTER_S = 1
LINGER_S = 2.0  # longest wait for a client still sending after its answer, s
# Answered past the connection limit (Kubernetes/KServe probes, `/healthz`, `/readyz`).
PROBE_PATHS = frozenset({"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"})


def _json_body(message: str, path: str = "") -> bytes:
    return json.dumps(http_error_body(message, path)).encode()


def bounded_protocol(*, header_timeout_s: float, max_connections: int) -> type[H11Protocol]:
    """An `H11Protocol` subclass with the module docstring's header timeout and connection limit."""

    class BoundedH11Protocol(_BoundedH11Protocol):
        _header_timeout_s = header_timeout_s
        _max_connections = max_connections

    return BoundedH11Protocol


class _BoundedH11Protocol(H11Protocol):
    _header_timeout_s: float = 10.0
    _max_connections: int = 1000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # Every close, uvicorn's own included (the request cycle holds this transport), lingers.
        self.transport = _LingeringTransport(transport, self)  # type: ignore[assignment]
        if len(self.connections) > self._max_connections:
            self.app = _connection_limit_app(self._max_connections, probes=self.app)
        self._watch_headers()

    def data_received(self, data: bytes) -> None:
        if self._linger_timer is not None:
            return  # the rest of a request already answered: dropped
        super().data_received(data)
        self._watch_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
        super().connection_lost(exc)
        # The request cycle calls back into this protocol (a reference cycle): let reference
        # counting free a closed connection at once, not the cyclic collector, whose full
        # collections over a flood of closed connections stalled the event loop ~0.1 s.
        self.cycle = None  # type: ignore[assignment]

    def peer_may_be_sending(self) -> bool:
        """Whether the client may still send data nobody will read: a body not complete, or a
        request whose head could not be parsed (a 400)."""
        return self.conn.their_state in (h11.SEND_BODY, h11.ERROR)

    def linger(self, transport: asyncio.Transport) -> None:
        """Half-close `transport` (the answer is flushed first) and close it once the client
        closes its side or after `LINGER_S`."""
        self._stop_header_timer()
        try:
            transport.write_eof()
        except OSError:  # the client is already gone: nothing to linger for
            transport.close()
            return
        self._linger_timer = self.loop.call_later(LINGER_S, transport.close)
        with contextlib.suppress(RuntimeError):  # reading may be paused by flow control
            transport.resume_reading()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch_headers()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request h11 cannot parse, with a JSON body."""
        self._stop_header_timer()
        body = _json_body(f"malformed HTTP request: {msg}")
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        try:
            for event in (
                h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
                h11.Data(data=body),
                h11.EndOfMessage(),
            ):
                self.transport.write(self.conn.send(event))
        except h11.LocalProtocolError:  # a response had already started
            pass
        self.transport.close()

    def _watch_headers(self) -> None:
        """Run the timer exactly while the connection waits on a slow client (`_stalled`)."""
        if self._stalled() and self._header_timer is None:
            self._header_timer = self.loop.call_later(self._header_timeout_s, self._timed_out)
        elif not self._stalled():
            self._stop_header_timer()

    def _stalled(self) -> bool:
        """Waiting for the next request's headers, or for the rest of a body already answered
        (an error sent before the body was read; uvicorn reads and discards the rest)."""
        if self.transport.is_closing():
            return False
        answered = self.cycle is None or self.cycle.response_complete
        state = self.conn.their_state
        return answered and (state is h11.IDLE or state is h11.SEND_BODY)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _timed_out(self) -> None:
        self._header_timer = None
        if self._stalled():
            self.transport.close()  # no request to answer yet: h11 cannot send a response


class _LingeringTransport:
    """The connection's transport, whose `close()` lingers (module docstring) while the
    client may still be sending; everything else is the transport's own."""

    def __init__(self, transport: asyncio.Transport, protocol: _BoundedH11Protocol) -> None:
        self._transport = transport
        self._protocol_ref = weakref.ref(protocol)  # the protocol holds this wrapper

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def is_closing(self) -> bool:
        """A lingering connection counts as closing: nothing more is written or answered."""
        protocol = self._protocol_ref()
        lingering = protocol is not None and protocol._linger_timer is not None
        return self._transport.is_closing() or lingering

    def close(self) -> None:
        transport, protocol = self._transport, self._protocol_ref()
        if protocol is None:  # the connection is gone: nothing to linger for
            transport.close()
            return
        if (
            transport.is_closing()
            or protocol._linger_timer is not None
            or not transport.can_write_eof()  # TLS: no half-close
            or not protocol.peer_may_be_sending()
        ):
            if protocol._linger_timer is None:
                transport.close()
            return
        protocol.linger(transport)


def _connection_limit_app(max_connections: int, probes: Any) -> Any:
    """503 for every request but the health probes, which `probes` (the real app) answers."""
    message = f"too many open connections (limit {max_connections}); retry later"

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope.get("method") == "GET" and scope.get("path") in PROBE_PATHS:
            await probes(scope, receive, send)
            return
        body = _json_body(message, scope.get("path", ""))
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", str(RETRY_AFTER_S).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


def uvicorn_config(app: Any, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """The uvicorn configuration of the service's HTTP server: protocol bounds and timeouts.

    `overrides` are further `uvicorn.Config` arguments (tests quieten the log with them).
    """
    options: dict[str, Any] = dict(
        http=bounded_protocol(
            header_timeout_s=settings.http_header_timeout_s,
            max_connections=settings.http_max_connections,
        ),
        log_level=settings.log_level.lower(),
        timeout_keep_alive=settings.http_keep_alive_s,
        h11_max_incomplete_event_size=settings.http_max_header_bytes,
        timeout_graceful_shutdown=max(int(settings.shutdown_grace_s), 1),
        ssl_certfile=settings.tls_cert_file,
        ssl_keyfile=settings.tls_key_file,
    )
    return uvicorn.Config(app, **{**options, **overrides})
