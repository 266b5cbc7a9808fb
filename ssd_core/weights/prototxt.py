"""Read a Caffe network description (`deploy.prototxt`, protobuf text format) without Caffe.

`parse_text_format` turns protobuf text format into nested dicts: every field maps to the list
of its values (fields repeat in Caffe: `bottom`, `aspect_ratio`, `dim`), messages are dicts,
scalars are `str` (quoted strings and enum names such as `MAX`), `bool`, `int` or `float`.
`read_prototxt` gives the net's input size and its layers in file order, both the current
`layer { type: "Convolution" }` form and the legacy V1 `layers { type: CONVOLUTION }` form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Message = dict[str, list[Any]]

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<comment>\#[^\n]*)
      | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<punct>[{}:<>;,\[\]])
      | (?P<word>[^\s{}:<>;,\[\]"'\#]+)
    )""",
    re.VERBOSE,
)

# V1 LayerParameter.LayerType names -> the current type strings (the ones SSD models use).
_V1_TYPES = {
    "CONCAT": "Concat",
    "CONVOLUTION": "Convolution",
    "DROPOUT": "Dropout",
    "ELTWISE": "Eltwise",
    "FLATTEN": "Flatten",
    "INNER_PRODUCT": "InnerProduct",
    "POOLING": "Pooling",
    "RELU": "ReLU",
    "SOFTMAX": "Softmax",
}


class PrototxtError(ValueError):
    """A prototxt that does not parse, or that describes a net we cannot read."""


@dataclass(frozen=True)
class CaffeLayer:
    """One layer of a Caffe net: its name, type string, input and output blobs, parameters."""

    name: str
    type: str
    bottoms: tuple[str, ...]
    tops: tuple[str, ...]
    params: Message = field(repr=False)

    def param(self, group: str) -> Message:
        """The layer's `<group>` message (e.g. `prior_box_param`), empty when absent."""
        values = self.params.get(group, [{}])
        return values[0]


@dataclass(frozen=True)
class CaffeNet:
    """A parsed `deploy.prototxt`: the net name, the input (height, width) and the layers."""

    name: str
    input_size: tuple[int, int]
    layers: tuple[CaffeLayer, ...]

    def layer(self, name: str) -> CaffeLayer | None:
        return next((layer for layer in self.layers if layer.name == name), None)


def parse_text_format(text: str) -> Message:
    """Protobuf text format -> nested `{field: [values]}` dicts.

    Raises:
        PrototxtError: unbalanced braces, a field without a value, or an unexpected token.
    """
    tokens = _tokens(text)
    message, position = _parse_message(tokens, 0, top_level=True)
    assert position == len(tokens)
    return message


def read_prototxt(path: str | Path) -> CaffeNet:
    """Read a Caffe `deploy.prototxt`.

    Raises:
        PrototxtError: the file does not parse, names no input size, or a layer has no name or
            no type.
    """
    path = Path(path)
    try:
        message = parse_text_format(path.read_text())
    except PrototxtError as error:
        raise PrototxtError(f"{path}: {error}") from error
    layers = tuple(
        _layer(raw, path) for raw in [*message.get("layer", []), *message.get("layers", [])]
    )
    return CaffeNet(
        name=str(message.get("name", [path.stem])[0]),
        input_size=_input_size(message, layers, path),
        layers=tuple(layer for layer in layers if layer.type != "Input"),
    )


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            if text[position:].strip():
                line = text.count("\n", 0, position) + 1
                raise PrototxtError(f"line {line}: cannot read {text[position : position + 20]!r}")
            break
        position = match.end()
        kind = match.lastgroup
        if kind is None or kind == "comment":
            continue
        tokens.append((kind, match.group(kind)))
    return tokens


def _parse_message(
    tokens: list[tuple[str, str]], position: int, top_level: bool = False
) -> tuple[Message, int]:
    message: Message = {}
    while position < len(tokens):
        kind, value = tokens[position]
        if kind == "punct" and value in "}>":
            if top_level:
                raise PrototxtError(f"unbalanced {value!r}")
            return message, position + 1
        if kind == "punct" and value in ";,":
            position += 1
            continue
        if kind != "word":
            raise PrototxtError(f"expected a field name, got {value!r}")
        position += 1
        if position < len(tokens) and tokens[position] == ("punct", ":"):
            position += 1
        if position >= len(tokens):
            raise PrototxtError(f"field {value!r} has no value")
        next_kind, next_value = tokens[position]
        if next_kind == "punct" and next_value in "{<":
            child, position = _parse_message(tokens, position + 1)
            message.setdefault(value, []).append(child)
        elif next_kind in ("word", "string"):
            message.setdefault(value, []).append(_scalar(next_kind, next_value))
            position += 1
        else:
            raise PrototxtError(f"field {value!r} has no value (got {next_value!r})")
    if not top_level:
        raise PrototxtError("a message is not closed (missing '}')")
    return message, position


def _scalar(kind: str, text: str) -> Any:
    if kind == "string":
        return bytes(text[1:-1], "utf-8").decode("unicode_escape")
    if text in ("true", "True"):
        return True
    if text in ("false", "False"):
        return False
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text  # an enum name, e.g. MAX, CENTER_SIZE


def _layer(raw: Message, path: Path) -> CaffeLayer:
    if "name" not in raw or "type" not in raw:
        raise PrototxtError(f"{path}: a layer without name or type: {sorted(raw)}")
    layer_type = str(raw["type"][0])
    return CaffeLayer(
        name=str(raw["name"][0]),
        type=_V1_TYPES.get(layer_type, layer_type),
        bottoms=tuple(str(b) for b in raw.get("bottom", [])),
        tops=tuple(str(t) for t in raw.get("top", [])),
        params=raw,
    )


def _input_size(message: Message, layers: tuple[CaffeLayer, ...], path: Path) -> tuple[int, int]:
    """(height, width) from `input_shape`, `input_dim` or an `Input` layer (N, C, H, W)."""
    if "input_shape" in message:
        dims = message["input_shape"][0].get("dim", [])
    elif "input_dim" in message:
        dims = message["input_dim"]
    else:
        inputs = [layer for layer in layers if layer.type == "Input"]
        shapes = inputs[0].param("input_param").get("shape", [{}]) if inputs else [{}]
        dims = shapes[0].get("dim", [])
    if len(dims) != 4:
        raise PrototxtError(f"{path}: no 4-D input shape (N, C, H, W) found, got dims {dims}")
    return int(dims[2]), int(dims[3])
