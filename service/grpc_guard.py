"""Wire-level guards of the gRPC server, as one server interceptor over every async method.

- Messages are parsed by the guard, not by grpc: grpc answers a message that fails to parse
  with UNKNOWN and the parser's exception text; here it is INVALID_ARGUMENT with a message.
- An exception a handler did not map to a status (a bug) is logged with its traceback and
  answered INTERNAL without its text, where grpc would send UNKNOWN and the exception text;
  the `NotImplementedError` of a generated servicer's unimplemented rpc is UNIMPLEMENTED.
- With a bearer token configured, every method outside `open_services` (health) needs the
  metadata `authorization: Bearer <token>`, else UNAUTHENTICATED.

`CallLimit` bounds the detection calls (`ssd.v1` and Open Inference Protocol inference) that
the servicers serve at once.

Plain (sync) unary handlers run in a thread, as grpc runs them; sync streaming handlers (health's
Watch) are left to grpc.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator
from typing import Any

import grpc
from grpc.aio import AbortError

from service.errors import OverloadedError

logger = logging.getLogger(__name__)

Deserializer = Callable[[bytes], Any]
INTERNAL_MESSAGE = "internal error; the server log has the cause"


class CallLimit:
    """At most `limit` detection calls (unary or streams) served at once, over every servicer
    that shares this object (`SSD_GRPC_MAX_IN_FLIGHT`)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0

    @property
    def full(self) -> bool:
        return self.active >= self.limit

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one call slot for the `with` block.

        Raises:
            OverloadedError: every slot is taken.
        """
        if self.full:
            raise OverloadedError(f"too many calls in flight ({self.limit}); retry later")
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1


class GuardInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc is untyped
    """Strict parsing, hidden internals and the optional bearer-token check (module docstring).

    Args:
        token: the bearer token clients must send; None turns the check off.
        open_services: full service names reachable without a token (e.g. health).
    """

    def __init__(self, token: str | None = None, open_services: Collection[str] = ()) -> None:
        self._token = token
        self._open_services = frozenset(open_services)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        method: str = details.method  # "/package.Service/Method"
        needs_token = self._token is not None and method.split("/")[1] not in self._open_services
        authorised = not needs_token or _has_token(details.invocation_metadata, self._token)
        return _guarded(handler, method, authorised)


def _has_token(metadata: Any, token: str | None) -> bool:
    expected = f"Bearer {token}".encode()
    for key, value in metadata or ():
        if key == "authorization":
            given = value if isinstance(value, bytes) else str(value).encode()
            return hmac.compare_digest(given, expected)
    return False


def _guarded(handler: Any, method: str, authorised: bool) -> Any:
    """`handler` with raw-bytes input parsed by the guard, or unchanged if it is synchronous."""
    if handler.request_streaming and handler.response_streaming:
        inner, kind = handler.stream_stream, "stream_stream"
    elif handler.request_streaming:
        inner, kind = handler.stream_unary, "stream_unary"
    elif handler.response_streaming:
        inner, kind = handler.unary_stream, "unary_stream"
    else:
        inner, kind = handler.unary_unary, "unary_unary"
    if kind == "unary_unary" and not inspect.iscoroutinefunction(inner):
        inner = _in_thread(inner)  # grpc would run it in its thread pool too
    elif not (inspect.iscoroutinefunction(inner) or inspect.isasyncgenfunction(inner)):
        return handler
    parse = _parser(handler.request_deserializer, method)
    if handler.request_streaming:
        wrapped = _wrap_streaming_input(inner, parse, authorised, method)
    else:
        wrapped = _wrap_unary_input(inner, parse, authorised, method)
    return handler._replace(request_deserializer=None, **{kind: wrapped})


def _in_thread(function: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Awaitable[Any]]:
    async def run(request: Any, context: grpc.aio.ServicerContext) -> Any:
        return await asyncio.to_thread(function, request, context)

    return run


def _parser(deserializer: Deserializer | None, method: str) -> Callable[[bytes], Any]:
    def parse(raw: bytes) -> Any:
        if deserializer is None:
            return raw
        try:
            return deserializer(raw)
        except Exception as error:  # protobuf's DecodeError and friends
            raise _MalformedMessageError(
                f"malformed request message for {method}: not a valid protobuf encoding"
            ) from error

    return parse


class _MalformedMessageError(Exception):
    pass


async def _refuse(context: grpc.aio.ServicerContext, authorised: bool) -> None:
    if not authorised:
        await context.abort(
            grpc.StatusCode.UNAUTHENTICATED,
            "missing or wrong bearer token: send metadata 'authorization: Bearer <token>'",
        )


def _wrap_unary_input(
    inner: Any, parse: Callable[[bytes], Any], authorised: bool, method: str
) -> Any:
    if inspect.isasyncgenfunction(inner):

        async def unary_stream(raw: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            await _refuse(context, authorised)
            request = await _parse_or_abort(parse, raw, context)
            async with _hidden_internals(context, method):
                async for response in inner(request, context):
                    yield response

        return unary_stream

    async def unary(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
        await _refuse(context, authorised)
        request = await _parse_or_abort(parse, raw, context)
        async with _hidden_internals(context, method):
            return await inner(request, context)
        return None  # not reached: _hidden_internals aborts or re-raises

    return unary


def _wrap_streaming_input(
    inner: Any, parse: Callable[[bytes], Any], authorised: bool, method: str
) -> Any:
    # A malformed message is raised to the handler's reader, not aborted from inside it: a
    # streaming handler (service.streams) first answers the items read before it, then the
    # error propagates here and ends the call with INVALID_ARGUMENT.
    async def parsed(raws: AsyncIterator[bytes]) -> AsyncIterator[Any]:
        async for raw in raws:
            yield parse(raw)

    if inspect.isasyncgenfunction(inner):

        async def stream_stream(
            raws: AsyncIterator[bytes], context: grpc.aio.ServicerContext
        ) -> AsyncIterator[Any]:
            await _refuse(context, authorised)
            async with _malformed_is_invalid(context), _hidden_internals(context, method):
                async for response in inner(parsed(raws), context):
                    yield response

        return stream_stream

    async def stream_unary(raws: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> Any:
        await _refuse(context, authorised)
        async with _malformed_is_invalid(context), _hidden_internals(context, method):
            return await inner(parsed(raws), context)
        return None  # not reached

    return stream_unary


async def _parse_or_abort(
    parse: Callable[[bytes], Any], raw: bytes, context: grpc.aio.ServicerContext
) -> Any:
    try:
        return parse(raw)
    except _MalformedMessageError as error:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))


class _malformed_is_invalid:  # noqa: N801 - used as a context manager
    """A malformed message of a request stream ends the call with INVALID_ARGUMENT."""

    def __init__(self, context: grpc.aio.ServicerContext) -> None:
        self._context = context

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, kind: Any, error: BaseException | None, traceback: Any) -> bool:
        if isinstance(error, _MalformedMessageError):
            await self._context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        return False


class _hidden_internals:  # noqa: N801 - used as a context manager, reads like a function
    """Turn an unexpected exception into a logged INTERNAL abort without its text."""

    def __init__(self, context: grpc.aio.ServicerContext, method: str) -> None:
        self._context = context
        self._method = method

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, kind: Any, error: BaseException | None, traceback: Any) -> bool:
        if (
            error is None
            or not isinstance(error, Exception)
            or isinstance(error, AbortError | _MalformedMessageError)
        ):
            return False
        if isinstance(error, NotImplementedError):  # a generated servicer's unimplemented rpc
            await self._context.abort(
                grpc.StatusCode.UNIMPLEMENTED, f"{self._method} is not implemented by this server"
            )
        logger.error("unhandled error in %s", self._method, exc_info=error)
        await self._context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)
        return False
