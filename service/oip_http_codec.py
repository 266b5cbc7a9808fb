"""The HTTP body of an Open Inference Protocol inference request and of its answer.

Request: the inference request JSON, optionally followed by binary tensor data (the binary
tensor data extension: `Inference-Header-Content-Length` gives the JSON's length, an input
with the parameter `binary_data_size` takes that many bytes of the data, in input order;
BYTES elements are 4-byte little-endian length-prefixed). `Inference-Header-Content-Length: 0`
is a raw binary request: the whole body is one image. In JSON, an `IMAGE` element is the
image base64-encoded (JSON strings cannot carry binary data). `Content-Encoding: gzip` or
`deflate` bodies are inflated within the same byte limit.

Answer: JSON, or JSON followed by the binary data of the outputs asked for as binary
(`binary_data` on an output, `binary_data_output` on the request; a raw binary request gets
every output binary), with `Inference-Header-Content-Length`.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from service.errors import ImageTooLargeError, InvalidTensorError, UnsupportedMediaTypeError
from service.oip_contract import (
    IMAGE,
    OUTPUT_DATATYPES,
    check_image_input,
    check_image_type,
    output_names,
)
from service.oip_contract import request_options as parse_options
from service.oip_infer import InferRequest, InferResponse
from service.oip_tensors import split_bytes, to_json_data, to_raw

HEADER_LENGTH = "inference-header-content-length"
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


@dataclass(frozen=True)
class HttpInferRequest:
    """A parsed request: what to run, and which outputs to answer in binary."""

    request: InferRequest
    binary_outputs: frozenset[str]


def inflate(body: bytes, encoding: str | None, max_bytes: int) -> bytes:
    """The body without its `Content-Encoding` (none, gzip or deflate), at most `max_bytes`.

    Raises:
        UnsupportedMediaTypeError: another encoding.
        InvalidTensorError: the compressed data is corrupt.
        ImageTooLargeError: it inflates past `max_bytes`.
    """
    name = (encoding or "identity").strip().lower()
    if name == "identity":
        return body
    if name not in _WBITS:
        raise UnsupportedMediaTypeError(
            f"unsupported Content-Encoding {name!r}; send gzip, deflate or no encoding"
        )
    inflater = zlib.decompressobj(_WBITS[name])
    try:
        data = inflater.decompress(body, max_bytes + 1)
    except zlib.error as error:
        raise InvalidTensorError(f"{name} request body does not inflate: {error}") from None
    if len(data) > max_bytes or inflater.unconsumed_tail:
        raise ImageTooLargeError(f"inflated request body is over the limit of {max_bytes} bytes")
    return data


def parse_request(
    body: bytes,
    header_length: str | None,
    *,
    model: str,
    version: str | None,
    max_images: int,
) -> HttpInferRequest:
    """The inference request an HTTP body carries (module docstring).

    Args:
        header_length: the `Inference-Header-Content-Length` header, if any.
        model, version: from the URL.
        max_images: most images one request may carry.
    Raises:
        InvalidTensorError: JSON, framing or tensors that do not fit the protocol or contract.
        InvalidParameterError: a bad request parameter.
    """
    split = _header_split(header_length, len(body))
    if split == 0:  # raw binary request: the body is one image, every output binary
        request = InferRequest(model, version, "", [body], parse_options({}), output_names(()))
        return HttpInferRequest(request, frozenset(request.outputs))
    header = _json_object(body[:split] if split is not None else body)
    binary = memoryview(body)[split:] if split is not None else memoryview(b"")
    images = _images(_field(header, "inputs", list), binary, max_images)
    parameters = _parameters(header.get("parameters"), "request")
    requested = [_output(item) for item in _field(header, "outputs", list, [])]
    names = output_names([name for name, _ in requested])
    request = InferRequest(
        model=model,
        version=version,
        id=_field(header, "id", str, ""),
        images=images,
        options=parse_options({k: v for k, v in parameters.items() if k != "binary_data_output"}),
        outputs=names,
    )
    return HttpInferRequest(request, _binary_outputs(parameters, requested, names))


def json_bytes(header_length: str | None, body_length: int) -> int:
    """How many bytes of a body of `body_length` are JSON, given its
    `Inference-Header-Content-Length` (the whole body without the header, or with one
    `parse_request` will refuse): what parsing it costs, binary tensor data being sliced, not
    parsed."""
    try:
        split = _header_split(header_length, body_length)
    except InvalidTensorError:
        return body_length
    return body_length if split is None else split


def _header_split(text: str | None, body_length: int) -> int | None:
    """Where the JSON ends: None when the header is absent (all JSON), else its value."""
    if text is None:
        return None
    if not text.isascii() or not text.strip().isdigit():
        raise InvalidTensorError(f"Inference-Header-Content-Length {text[:40]!r} is not a count")
    length = int(text)
    if length > body_length:
        raise InvalidTensorError(
            f"Inference-Header-Content-Length is {length} but the body has {body_length} bytes"
        )
    return length


def _json_object(data: bytes | memoryview) -> dict[str, Any]:
    try:
        value = json.loads(bytes(data))
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidTensorError(f"inference request JSON does not parse: {error}") from None
    if not isinstance(value, dict):
        raise InvalidTensorError("inference request JSON must be an object")
    return value


def _field(obj: dict[str, Any], key: str, kind: type, default: Any = None) -> Any:
    """`obj[key]` checked to be a `kind`; absent: `default`, or an error if None."""
    if key not in obj:
        if default is None:
            raise InvalidTensorError(f"inference request has no {key!r}")
        return default
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
        raise InvalidTensorError(f"{key!r} must be a JSON {kind.__name__}, got {value!r:.80}")
    return value


def _parameters(value: Any, where: str) -> dict[str, Any]:
    """A `$parameters` object: names to string, number or boolean."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(v, str | int | float | bool) for v in value.values()
    ):
        raise InvalidTensorError(
            f"{where} parameters must be an object of strings, numbers and booleans"
        )
    return value


def _images(inputs: list[Any], binary: memoryview, max_images: int) -> list[bytes]:
    """The encoded images of the request's only input (JSON base64 strings or binary)."""
    if len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise InvalidTensorError(f"this model takes exactly one input, {IMAGE!r}")
    tensor = inputs[0]
    name = _field(tensor, "name", str)
    datatype = _field(tensor, "datatype", str)
    shape = _field(tensor, "shape", list)
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise InvalidTensorError(f"input {name!r} shape must be non-negative integers")
    check_image_type(name, datatype)
    size = _parameters(tensor.get("parameters"), f"input {name!r}").get("binary_data_size")
    if size is not None:
        images = _binary_images(name, size, binary)
    else:
        if len(binary):
            raise InvalidTensorError(
                f"the body has {len(binary)} bytes of binary data but no input declares "
                "binary_data_size"
            )
        images = _json_images(name, tensor.get("data"))
    check_image_input(name, datatype, shape, len(images), max_images)
    return images


def _binary_images(name: str, size: Any, binary: memoryview) -> list[bytes]:
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise InvalidTensorError(f"input {name!r} binary_data_size must be a byte count")
    if size != len(binary):
        raise InvalidTensorError(
            f"input {name!r} declares binary_data_size {size} but the body has {len(binary)} "
            "bytes after the JSON"
        )
    return split_bytes(binary, name)


def _json_images(name: str, data: Any) -> list[bytes]:
    if data is None:
        raise InvalidTensorError(f"input {name!r} has neither 'data' nor binary_data_size")
    images = []
    for index, item in enumerate(_flatten(data)):
        if not isinstance(item, str):
            raise InvalidTensorError(
                f"{IMAGE}[{index}]: a JSON image must be a base64 string, got {type(item).__name__}"
            )
        try:
            images.append(base64.b64decode(item, validate=True))
        except (binascii.Error, ValueError):
            raise InvalidTensorError(
                f"{IMAGE}[{index}]: not base64; send the encoded image base64-encoded in JSON, "
                "or as binary data (binary_data_size)"
            ) from None
    return images


def _flatten(data: Any) -> list[Any]:
    """Row-major elements of JSON tensor data, nested or flat."""
    if not isinstance(data, list):
        return [data]
    items: list[Any] = []
    for item in data:
        items.extend(_flatten(item) if isinstance(item, list) else [item])
    return items


def _output(item: Any) -> tuple[str, dict[str, Any]]:
    """(name, parameters) of one `$request_output`."""
    if not isinstance(item, dict):
        raise InvalidTensorError("each requested output must be an object with a 'name'")
    name = _field(item, "name", str)
    parameters = _parameters(item.get("parameters"), f"output {name!r}")
    if "classification" in parameters:
        raise InvalidTensorError(
            f"output {name!r}: the classification extension is not supported; read CLASSES, "
            "SCORES and LABELS"
        )
    return name, parameters


def _binary_outputs(
    parameters: dict[str, Any], requested: list[tuple[str, dict[str, Any]]], names: Sequence[str]
) -> frozenset[str]:
    """The outputs answered as binary data: `binary_data` per output, else the request's
    `binary_data_output`."""
    default = parameters.get("binary_data_output", False) is True
    chosen = {name: params.get("binary_data", default) is True for name, params in requested}
    return frozenset(name for name in names if chosen.get(name, default))


def encode_response(
    response: InferResponse, binary_outputs: frozenset[str]
) -> tuple[bytes, dict[str, str]]:
    """The answer body and its headers (content type, Inference-Header-Content-Length)."""
    outputs = []
    blobs = []
    for name, array in response.outputs.items():
        datatype = OUTPUT_DATATYPES[name]
        output: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if name in binary_outputs:
            blob = to_raw(array, datatype)
            output["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            output["data"] = to_json_data(array, datatype)
        outputs.append(output)
    header: dict[str, Any] = {
        "model_name": response.model_name,
        "model_version": response.model_version,
    }
    if response.id:
        header["id"] = response.id
    header["outputs"] = outputs
    text = json.dumps(header, separators=(",", ":")).encode()
    if not blobs:
        return text, {"content-type": "application/json"}
    return b"".join([text, *blobs]), {
        "content-type": "application/octet-stream",
        HEADER_LENGTH: str(len(text)),
    }
