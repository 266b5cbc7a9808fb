"""Answer a stream of requests: exactly one response per item, paced by a per-stream window.

Every protocol's streaming call (`ssd.v1.Detector/StreamDetect`, the OIP `ModelStreamInfer`)
runs its items through `answer_stream`. The guarantees live here, once:

- identity: each item is handled by its own task, which builds the response from that item
  (its `request_id`, its image); nothing is matched by position or through a shared slot;
- exactly one response per item read: a `ServiceError` becomes that item's error response,
  any other exception an INTERNAL error response (logged, rate-limited); the stream goes on;
- pacing, not shedding: the next item is read only while fewer than `window` items of this
  stream are unanswered (read but not yet handed to the transport). A client that sends faster
  than the service answers is slowed by HTTP/2 flow control instead of seeing its items fail;
- a failure to read the stream (an undecodable message, a transport error) stops reading, lets
  every item already read be answered, then raises `StreamReadError`, so the call ends with a
  non-OK status rather than OK with items silently missing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager
from typing import TypeVar

import grpc

from service.errors import InternalError, ServiceError
from service.log_limits import RepeatLimiter

logger = logging.getLogger(__name__)

Req = TypeVar("Req")
Resp = TypeVar("Resp")

# Default per-stream window: enough items in flight to fill a batch of 8 twice over, small
# enough that a few streams cannot fill the 64-request queue by themselves.
DEFAULT_STREAM_WINDOW = 16

_unexpected_errors = RepeatLimiter(logger, interval_s=1.0)


class StreamReadError(Exception):
    """Reading the request stream failed; the items read before it have all been answered.

    `__cause__` holds the read exception (e.g. protobuf `DecodeError` or a transport error).
    """


async def answer_stream(
    requests: AsyncIterator[Req],
    answer: Callable[[Req], Awaitable[Resp]],
    error_response: Callable[[Req, ServiceError], Resp],
    *,
    window: int = DEFAULT_STREAM_WINDOW,
) -> AsyncIterator[Resp]:
    """Yield one response per item of `requests`, in completion order.

    Args:
        requests: the incoming items (a gRPC request iterator).
        answer: item -> its successful response; raises `ServiceError` for a per-item failure.
        error_response: (item, error) -> the response that reports `error` for that item.
        window: most items of this stream read but not yet yielded (>= 1).
    Raises:
        StreamReadError: reading `requests` failed, after the items read so far were yielded.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    room = asyncio.Semaphore(window)
    done: asyncio.Queue[Resp | _EndOfStream] = asyncio.Queue()
    reader = asyncio.create_task(
        _read_items(requests, room, done, lambda item: _answer_one(item, answer, error_response))
    )
    try:
        while not isinstance(response := await done.get(), _EndOfStream):
            yield response
            room.release()
        if response.error is not None:
            raise StreamReadError(f"reading the request stream failed: {response.error}") from (
                response.error
            )
    finally:
        reader.cancel()


async def serve_stream_call(
    requests: AsyncIterator[Req],
    answer: Callable[[Req], Awaitable[Resp]],
    error_response: Callable[[Req, ServiceError], Resp],
    *,
    window: int,
    context: grpc.aio.ServicerContext,
    call_slot: Callable[[], AbstractContextManager[object]],
) -> AsyncIterator[Resp]:
    """The body of a streaming gRPC call: `answer_stream` inside one of the server's call
    slots (`call_slot()` raises `ServiceError` when none is free: the call ends with its code);
    a stream that could not be read ends with the read error's status (e.g. the guard's
    INVALID_ARGUMENT for a malformed message) once every item read is answered."""
    try:
        with call_slot():
            async for response in answer_stream(requests, answer, error_response, window=window):
                yield response
    except ServiceError as error:
        await context.abort(error.grpc_code, error.message)
    except StreamReadError as error:
        assert error.__cause__ is not None
        raise error.__cause__ from None


class _EndOfStream:
    """Put on the response queue after the last item's response; carries the read error."""

    def __init__(self, error: Exception | None) -> None:
        self.error = error


async def _read_items(
    requests: AsyncIterator[Req],
    room: asyncio.Semaphore,
    done: asyncio.Queue[Resp | _EndOfStream],
    handle: Callable[[Req], Awaitable[Resp]],
) -> None:
    """Read items while the window has room, one task each; end with `_EndOfStream`."""
    tasks: set[asyncio.Task[None]] = set()

    async def run(item: Req) -> None:
        done.put_nowait(await handle(item))

    error: Exception | None = None
    iterator = aiter(requests)
    try:
        while True:
            await room.acquire()
            try:
                item = await anext(iterator)
            except StopAsyncIteration:
                break
            except Exception as read_error:  # undecodable message or transport failure
                error = read_error
                break
            task = asyncio.create_task(run(item))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)
        done.put_nowait(_EndOfStream(error))
    finally:
        for task in tasks:
            task.cancel()


async def _answer_one(
    item: Req,
    answer: Callable[[Req], Awaitable[Resp]],
    error_response: Callable[[Req, ServiceError], Resp],
) -> Resp:
    try:
        return await answer(item)
    except ServiceError as error:
        return error_response(item, error)
    except Exception as error:  # a bug must cost one item its answer, never the stream
        _unexpected_errors.exception("unexpected error answering a stream item: %r", error)
        return error_response(item, InternalError("internal error answering this item"))
