"""What every HTTP endpoint that takes a body needs around it: the one mapping of a
`ServiceError` to an answer, whether an error answer closes the connection, and cancelling
the work of a client that went away. Shared by `/detect` and the Open Inference Protocol.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse

from service.errors import (
    ClientGoneError,
    ServiceError,
    http_error_body,
    is_oip_path,
    oip_http_status,
    retry_after_s,
)

T = TypeVar("T")
# An error answer sent before the body is read lets uvicorn read and discard up to this much
# of the rest (so the client, still sending, reads the answer); a larger rest closes instead.
DRAIN_ALLOWANCE_BYTES = 1024 * 1024


class BodyProgress:
    """Whether an error answer should close the connection instead of letting uvicorn read and
    discard the rest of the body: yes when the unread rest is unknown (chunked) or large."""

    def __init__(self, request: Request) -> None:
        self.complete = False
        text = request.headers.get("content-length", "")
        self._declared = int(text) if text.isascii() and text.isdigit() and len(text) < 19 else None

    def close_after_error(self) -> bool:
        if self.complete:
            return False
        return self._declared is None or self._declared > DRAIN_ALLOWANCE_BYTES


def error_response(
    error: ServiceError, *, close_connection: bool = False, path: str = ""
) -> JSONResponse:
    """The one mapping of a `ServiceError` to an HTTP response: status, body, Retry-After.

    `path` picks the body's shape (`service.errors.http_error_body`: OIP paths use "error")
    and, on the Open Inference Protocol, its status (`service.errors.oip_http_status`)."""
    headers = {}
    retry = retry_after_s(error)
    if retry is not None:
        headers["Retry-After"] = str(retry)
    if close_connection:
        headers["Connection"] = "close"
    return JSONResponse(
        http_error_body(error.message, path),
        status_code=oip_http_status(error) if is_oip_path(path) else error.http_status,
        headers=headers,
    )


async def cancel_on_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it if the client disconnects first (its request is dropped).

    A client that is already gone is noticed before `work` starts, so its image is never
    decoded; later, the cancellation reaches a queued decode or the batcher queue, which both
    drop the request (a decode already running finishes, its result unused).
    """
    watcher = asyncio.ensure_future(_wait_for_disconnect(request))
    # A client that sent its request and hung up has its end-of-stream waiting in the socket:
    # reading it, closing the transport and marking the request disconnected take the event
    # loop three turns. Waiting for them here keeps such requests out of the decode pool and
    # the queue slots, where a flood of them would crowd out live clients.
    for _ in range(3):
        await asyncio.sleep(0)
        if watcher.done():
            break
    if watcher.done():
        _close_unstarted(work)
        raise ClientGoneError("client disconnected before the response was ready")
    task = asyncio.ensure_future(work)
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        raise ClientGoneError("client disconnected before the response was ready")
    return task.result()


def _close_unstarted(work: Awaitable[Any]) -> None:
    """Close a coroutine that will never run (no "never awaited" warning)."""
    close = getattr(work, "close", None)
    if close is not None:
        close()


async def _wait_for_disconnect(request: Request) -> None:
    receive: Callable[[], Awaitable[MutableMapping[str, Any]]] = request.receive
    while (await receive())["type"] != "http.disconnect":
        pass
