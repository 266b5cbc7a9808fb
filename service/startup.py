"""What start-up needs so that it fails fast and clearly and can always be stopped.

- `StartupError`: a reason not to serve, told to the operator as one line (exit code 2).
- `bind_http_socket` / `probe_port`: take a port exclusively before the model loads, and name
  the `SSD_` variable of a port that is busy.
- `run_in_daemon_thread`: blocking start-up work (loading a model) that SIGTERM may abandon:
  threads of asyncio's default executor are joined at exit, a daemon thread is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
_abandoned: list[threading.Thread] = []


class StartupError(Exception):
    """The service cannot start; the message (one line) names the setting to change."""


def _address_family(host: str, port: int) -> tuple[socket.AddressFamily, tuple[str, int]]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise StartupError(f"SSD_HOST={host!r}: not an address of this host ({error})") from None
    family, _, _, _, address = infos[0]
    return family, (str(address[0]), int(address[1]))


def bind_http_socket(host: str, port: int, variable: str = "SSD_HTTP_PORT") -> socket.socket:
    """A listening TCP socket on (host, port), never shared with another process.

    SO_REUSEADDR (rebinding over TIME_WAIT) is on, as uvicorn has it; SO_REUSEPORT, which would
    let a second instance share the port, is not. The socket is made with protocol IPPROTO_TCP
    and TCP_NODELAY: asyncio turns Nagle's algorithm off only on connections of a socket whose
    protocol says TCP, and with it on, a response's body (written after its headers) waited for
    the client's delayed ACK: 40 ms on every keep-alive request.

    Raises:
        StartupError: "SSD_HTTP_PORT=8080: cannot listen on 0.0.0.0:8080: Address already in use".
    """
    family, address = _address_family(host, port)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as error:
        sock.close()
        raise StartupError(
            f"{variable}={port}: cannot listen on {host}:{port}: {error.strerror}"
        ) from None
    sock.setblocking(False)
    return sock


def probe_port(host: str, port: int, variable: str) -> None:
    """Fail with the system's reason if (host, port) cannot be bound right now (e.g. in use)."""
    bind_http_socket(host, port, variable).close()


def run_in_daemon_thread(function: Callable[[], T]) -> asyncio.Future[T]:
    """Run `function` in a new daemon thread; its result resolves the returned future.

    Cancelling the future does not stop the thread, but the process may exit without it.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        result: T | None = None
        error: BaseException | None = None
        try:
            result = function()
        except BaseException as raised:  # handed to the awaiting coroutine
            error = raised
        # RuntimeError: the loop closed meanwhile (SIGTERM), nobody waits for this any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, result, error)

    thread = threading.Thread(target=run, name="startup", daemon=True)
    thread.start()
    _abandoned.append(thread)
    return future


def startup_work_running() -> bool:
    """True while a `run_in_daemon_thread` function has not returned (e.g. a model still loads)."""
    return any(thread.is_alive() for thread in _abandoned)
