"""Read the image of an HTTP request within limits, while its body streams.

The body is a raw `image/*` payload or `multipart/form-data` with a file field `image`.
Every limit holds as bytes arrive, never after buffering: the byte limit is checked on each
chunk (a chunked upload of 1 GiB is refused at the first chunk past the limit, and multipart
parts are parsed in memory as they stream, so nothing is spooled to disk); the whole body
must arrive within a timeout (a client that drips its body, or declares more than it sends,
gets 408); the bytes are counted against the in-flight budget as they arrive.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from service.errors import (
    ClientGoneError,
    ImageTooLargeError,
    InvalidParameterError,
    MalformedRequestError,
    RequestTimeoutError,
    UnsupportedMediaTypeError,
)
from service.in_flight import Ticket

# Boundaries, part headers and small fields a multipart body carries around the image.
MULTIPART_OVERHEAD_BYTES = 64 * 1024
MAX_MULTIPART_PARTS = 16
IMAGE_FIELD = "image"


def body_kind(request: Request) -> str:
    """ "multipart" or "raw" from the content type.

    Raises:
        UnsupportedMediaTypeError: neither `multipart/form-data` nor `image/*`.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        return "multipart"
    if content_type.startswith("image/"):
        return "raw"
    raise UnsupportedMediaTypeError(
        f"unsupported content type {content_type or '(none)'!r}; send multipart/form-data "
        "with a file field 'image', or the raw image with an image/* content type"
    )


def max_body_bytes(kind: str, max_image_bytes: int) -> int:
    """The largest body accepted for an image limit: the image plus multipart framing."""
    return max_image_bytes + (MULTIPART_OVERHEAD_BYTES if kind == "multipart" else 0)


def declared_length(request: Request, max_body: int) -> int:
    """The body size the client declared (0 if chunked), refused unread if over `max_body`.

    Raises:
        ImageTooLargeError: `Content-Length` over `max_body`.
        MalformedRequestError: `Content-Length` is not a number.
    """
    text = request.headers.get("content-length")
    if text is None:
        return 0
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise MalformedRequestError(f"Content-Length {text[:40]!r} is not a byte count")
    declared = int(text)
    if declared > max_body:
        raise ImageTooLargeError(
            f"request body is {declared} bytes, over the limit of {max_body} bytes"
        )
    return declared


async def read_image(
    request: Request, kind: str, *, max_image_bytes: int, timeout_s: float, ticket: Ticket
) -> bytes:
    """The image bytes of the request, read within the limits in the module docstring.

    Raises:
        ImageTooLargeError: the body or the image passed its byte limit while streaming.
        RequestTimeoutError: the body did not arrive within `timeout_s`.
        OverloadedError: a chunked body outgrew the in-flight byte budget.
        InvalidParameterError: multipart without exactly one field `image`.
        MalformedRequestError: multipart framing that does not parse.
        ClientGoneError: the client disconnected while sending.
    """
    max_body = max_body_bytes(kind, max_image_bytes)
    collector = _RawImage() if kind == "raw" else _MultipartImage(request)
    try:
        async with asyncio.timeout(timeout_s):
            received = 0
            async for chunk in _chunks(request):
                received += len(chunk)
                collector.feed(chunk, max_image_bytes)  # the image limit speaks first
                if received > max_body:
                    raise ImageTooLargeError(f"request body is over the limit of {max_body} bytes")
                ticket.grow_to(received)
    except TimeoutError:
        raise RequestTimeoutError(
            f"request body not received within {timeout_s:g} s; send it faster or in full"
        ) from None
    return collector.image()


async def read_body(request: Request, *, max_bytes: int, timeout_s: float, ticket: Ticket) -> bytes:
    """The whole body of a request that is not an image upload (an OIP inference request),
    read within the byte limit and the timeout, counted against the in-flight budget.

    Raises:
        ImageTooLargeError: the body passed `max_bytes` while streaming.
        RequestTimeoutError: the body did not arrive within `timeout_s`.
        OverloadedError: a chunked body outgrew the in-flight byte budget.
        ClientGoneError: the client disconnected while sending.
    """
    chunks: list[bytes] = []
    received = 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in _chunks(request):
                received += len(chunk)
                if received > max_bytes:
                    raise ImageTooLargeError(f"request body is over the limit of {max_bytes} bytes")
                ticket.grow_to(received)
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeoutError(
            f"request body not received within {timeout_s:g} s; send it faster or in full"
        ) from None
    return b"".join(chunks)


async def _chunks(request: Request) -> AsyncIterator[bytes]:
    try:
        async for chunk in request.stream():
            if chunk:
                yield chunk
    except ClientDisconnect:
        raise ClientGoneError("client disconnected while sending the request body") from None


def _over_limit(max_image_bytes: int) -> ImageTooLargeError:
    return ImageTooLargeError(f"image is over the limit of {max_image_bytes} bytes")


class _RawImage:
    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._size = 0

    def feed(self, chunk: bytes, max_image_bytes: int) -> None:
        self._size += len(chunk)
        if self._size > max_image_bytes:
            raise _over_limit(max_image_bytes)
        self._chunks.append(chunk)

    def image(self) -> bytes:
        return b"".join(self._chunks)


class _MultipartImage:
    """Keeps the data of the part named `image` from a streaming multipart parser."""

    def __init__(self, request: Request) -> None:
        _, options = parse_options_header(request.headers.get("content-type", ""))
        boundary = options.get(b"boundary")
        if not boundary:
            raise MalformedRequestError("multipart/form-data content type without a boundary")
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._on_part_begin,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
                "on_part_data": self._on_part_data,
                "on_end": self._on_end,
            },
        )
        self._parts = 0
        self._field = b""
        self._value = b""
        self._disposition = b""
        self._in_image = False
        self._image: list[bytes] | None = None
        self._size = 0
        self._limit = 0
        self._ended = False

    def feed(self, chunk: bytes, max_image_bytes: int) -> None:
        self._limit = max_image_bytes
        try:
            self._parser.write(chunk)
        except MultipartParseError as error:
            raise MalformedRequestError(f"multipart body does not parse: {error}") from None

    def image(self) -> bytes:
        if not self._ended:
            raise MalformedRequestError("multipart body ended before its closing boundary")
        if self._image is None:
            raise InvalidParameterError("multipart request has no file field named 'image'")
        return b"".join(self._image)

    def _on_part_begin(self) -> None:
        self._parts += 1
        if self._parts > MAX_MULTIPART_PARTS:
            raise MalformedRequestError(f"multipart body has over {MAX_MULTIPART_PARTS} parts")
        self._disposition = b""
        self._in_image = False

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _on_header_end(self) -> None:
        if self._field.strip().lower() == b"content-disposition":
            self._disposition = self._value
        self._field, self._value = b"", b""

    def _on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if options.get(b"name") != IMAGE_FIELD.encode():
            return
        if self._image is not None:
            raise InvalidParameterError("multipart request has more than one field 'image'")
        self._in_image = True
        self._image = []

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if not self._in_image or self._image is None:
            return  # other fields count against the body limit only
        self._size += end - start
        if self._size > self._limit:
            raise _over_limit(self._limit)
        self._image.append(bytes(data[start:end]))

    def _on_end(self) -> None:
        self._ended = True
