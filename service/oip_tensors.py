"""Tensor data of the Open Inference Protocol: datatypes, BYTES framing, raw and JSON forms.

Raw (binary) tensor data is little-endian, row-major, without padding; a BYTES element is a
4-byte little-endian unsigned length followed by that many bytes (the binary tensor data
extension over HTTP, `raw_input_contents` / `raw_output_contents` over gRPC). JSON tensor data
is the flattened row-major list of elements; a BYTES element is a string.
Nothing here knows a model: `service.oip_contract` says which tensors the detector takes.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from service.errors import InvalidTensorError

BYTES = "BYTES"
# Numeric datatypes and their little-endian numpy dtypes (BF16 has none: not supported).
DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
_LENGTH = struct.Struct("<I")  # the 4-byte length before each BYTES element


def element_count(shape: Sequence[int]) -> int:
    """Elements of a tensor of `shape` (1 for shape [])."""
    return math.prod(shape)


def split_bytes(raw: bytes | memoryview, name: str) -> list[bytes]:
    """The elements of a raw BYTES tensor: each a 4-byte little-endian length, then the bytes.

    Raises:
        InvalidTensorError: a length runs past the end of the data.
    """
    view = memoryview(raw)
    items: list[bytes] = []
    offset = 0
    while offset < len(view):
        if offset + _LENGTH.size > len(view):
            raise InvalidTensorError(
                f"input {name!r}: BYTES data ends inside the 4-byte length of element "
                f"{len(items)}; each element is a little-endian uint32 length, then its bytes"
            )
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += _LENGTH.size
        if offset + length > len(view):
            raise InvalidTensorError(
                f"input {name!r}: BYTES element {len(items)} declares {length} bytes, only "
                f"{len(view) - offset} follow"
            )
        items.append(bytes(view[offset : offset + length]))
        offset += length
    return items


def join_bytes(items: Iterable[bytes]) -> bytes:
    """The raw form of BYTES elements: each prefixed with its 4-byte little-endian length."""
    return b"".join(_LENGTH.pack(len(item)) + item for item in items)


def to_raw(array: np.ndarray, datatype: str) -> bytes:
    """A tensor's raw (binary) data, row-major.

    Args:
        array: the tensor; for BYTES an object array of `bytes` or `str` (UTF-8 encoded).
        datatype: an OIP datatype name ("FP32", "BYTES", ...).
    """
    if datatype == BYTES:
        return join_bytes(_as_bytes(item) for item in array.reshape(-1))
    return np.ascontiguousarray(array, dtype=DTYPES[datatype]).tobytes()


def to_json_data(array: np.ndarray, datatype: str) -> list[Any]:
    """A tensor's JSON data: the flattened row-major elements (BYTES as strings)."""
    flat = array.reshape(-1)
    if datatype == BYTES:
        return [item.decode("utf-8") if isinstance(item, bytes) else str(item) for item in flat]
    return list(flat.astype(DTYPES[datatype]).tolist())


def _as_bytes(item: Any) -> bytes:
    return item if isinstance(item, bytes) else str(item).encode("utf-8")
