"""Caffe `.caffemodel` weights: read and write the binary file, load it into our Keras model.

The file is a serialised `NetParameter` (our minimal `caffe.proto`, no Caffe install needed).
Layers are matched by their Caffe names, which our networks keep (VGG-16: `conv1_1` ... `fc7`,
`conv6_1` ...; ResNet-10: `data_bn`, `layer_64_1_conv1_h` ...; `conv4_3_norm`,
`<source>_mbox_loc`, `<source>_mbox_conf`).

Blob layouts:
- Convolution: blob 0 the kernel (out, in, kh, kw), blob 1 the bias (out,). Keras wants the
  kernel as (kh, kw, in, out). Caffe's conv1_1 reads BGR; our graph swaps RGB to BGR before
  conv1_1, so the kernel's input channels are used as they are.
- Normalize (`conv4_3_norm`): blob 0, the per-channel scale (C,).
- BatchNorm: mean * f, variance * f, and the moving-average factor f (1,); the Keras
  BatchNormalization (no gamma/beta, Caffe's eps 1e-5) gets mean and variance.
- Scale (after every BatchNorm): gamma (C,), beta (C,), as the `ChannelScale` layer holds them.
Files written before `BlobShape` existed store 4-D (num, channels, height, width) shapes,
e.g. a bias as (1, 1, 1, out); those are accepted when they hold the same non-unit dimensions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import keras
import numpy as np

from ssd_core.weights import assign
from ssd_core.weights.caffe_pb2 import BlobProto, NetParameter

CaffeBlobs = dict[str, list[np.ndarray]]
"""Layer name -> its parameter blobs, float32, in Caffe layout."""


def read_caffemodel(path: str | Path) -> CaffeBlobs:
    """Read every layer that has parameter blobs from a binary `.caffemodel`.

    Both the current `layer` and the legacy `layers` (V1) fields are read.

    Returns:
        Layer name -> list of float32 arrays in Caffe layout, in file order.

    Raises:
        WeightFileError: the file does not parse as a NetParameter, or two layers that carry
            blobs share a name.
    """
    net = NetParameter()
    try:
        net.ParseFromString(Path(path).read_bytes())
    except Exception as error:  # protobuf raises its own DecodeError
        raise assign.WeightFileError(f"{path}: not a Caffe NetParameter file ({error})") from error
    blobs: CaffeBlobs = {}
    for layer in [*net.layer, *net.layers]:
        if not layer.blobs:
            continue
        if layer.name in blobs:
            raise assign.WeightFileError(
                f"{path}: two layers with weights are named {layer.name!r}"
            )
        blobs[layer.name] = [_blob_to_array(blob) for blob in layer.blobs]
    return blobs


def write_caffemodel(
    path: str | Path,
    blobs: Mapping[str, Sequence[np.ndarray]],
    net_name: str = "",
    layer_types: Mapping[str, str] | None = None,
    legacy: bool = False,
) -> None:
    """Write layer blobs (Caffe layout) as a binary `.caffemodel`.

    Args:
        path: output file.
        blobs: layer name -> arrays in Caffe layout, e.g. a kernel (out, in, kh, kw).
        net_name: the NetParameter name.
        layer_types: layer name -> Caffe type string ("Convolution", "Normalize"); only the
            current format stores it.
        legacy: write V1 `layers` with 4-D num/channels/height/width shapes, as files from
            before 2015 do, instead of `layer` with `BlobShape`.
    """
    net = NetParameter()
    if net_name:
        net.name = net_name
    types = layer_types or {}
    for name, arrays in blobs.items():
        layer = net.layers.add(name=name) if legacy else net.layer.add(name=name)
        if not legacy and name in types:
            layer.type = types[name]
        for array in arrays:
            _fill_blob(layer.blobs.add(), np.asarray(array, dtype=np.float32), legacy)
    Path(path).write_bytes(net.SerializeToString())


def keras_shape_to_caffe(shape: Sequence[int]) -> tuple[int, ...]:
    """A Keras weight shape in Caffe layout: (kh, kw, in, out) -> (out, in, kh, kw)."""
    shape = tuple(shape)
    if len(shape) == 4:
        kh, kw, c_in, c_out = shape
        return (c_out, c_in, kh, kw)
    return shape


def caffe_to_keras(array: np.ndarray) -> np.ndarray:
    """A Caffe blob in Keras layout: kernels (out, in, kh, kw) -> (kh, kw, in, out)."""
    if array.ndim == 4:
        return np.ascontiguousarray(array.transpose(2, 3, 1, 0))
    return array


def caffe_weights_for_model(
    blobs: Mapping[str, Sequence[np.ndarray]],
    model: keras.Model,
    layer_names: Sequence[str],
    source: str,
) -> dict[str, list[np.ndarray]]:
    """Check the Caffe blobs of `layer_names` against the model and convert them to Keras layout.

    Raises:
        WeightFileError: a layer is missing, has another number of blobs, or a blob has
            another shape; the message gives the shapes in Caffe layout.
    """
    converted: dict[str, list[np.ndarray]] = {}
    for name in layer_names:
        assign.check_layer_present(name, blobs, source)
        keras_shapes = assign.expected_shapes(model, name)
        if isinstance(model.get_layer(name), keras.layers.BatchNormalization):
            converted[name] = _batch_norm_statistics(name, blobs[name], keras_shapes, source)
            continue
        assign.check_weight_count(name, len(keras_shapes), len(blobs[name]), source)
        arrays = []
        for index, (shape, blob) in enumerate(zip(keras_shapes, blobs[name], strict=True)):
            expected = keras_shape_to_caffe(shape)
            blob = _fit_legacy_shape(blob, expected)
            assign.check_shape(name, index, expected, blob.shape, source)
            arrays.append(caffe_to_keras(blob))
        converted[name] = arrays
    return converted


def _batch_norm_statistics(
    name: str, blobs: Sequence[np.ndarray], keras_shapes: Sequence[tuple[int, ...]], source: str
) -> list[np.ndarray]:
    """Caffe `BatchNorm` blobs -> Keras `[moving_mean, moving_variance]`.

    Caffe stores the running sums: blob 0 is mean * f, blob 1 variance * f, blob 2 the single
    moving-average factor f; the statistics are blob / f (0 when f is 0, as `batch_norm_layer.cpp`
    does). The Keras layer must have no affine part (the Caffe `Scale` layer that follows holds
    gamma and beta).
    """
    if len(keras_shapes) != 2:
        raise assign.WeightFileError(
            f"{source}: layer {name!r} is a Keras BatchNormalization with gamma/beta; a Caffe "
            "BatchNorm needs center=False, scale=False and a following Scale layer"
        )
    assign.check_weight_count(name, 3, len(blobs), source)
    mean, variance, factor = blobs
    mean = _fit_legacy_shape(mean, keras_shapes[0])
    variance = _fit_legacy_shape(variance, keras_shapes[1])
    assign.check_shape(name, 0, keras_shapes[0], mean.shape, source)
    assign.check_shape(name, 1, keras_shapes[1], variance.shape, source)
    assign.check_shape(name, 2, (1,), _fit_legacy_shape(factor, (1,)).shape, source)
    scale = 0.0 if float(factor.ravel()[0]) == 0.0 else 1.0 / float(factor.ravel()[0])
    return [
        (mean.astype(np.float64) * scale).astype(np.float32),
        (variance.astype(np.float64) * scale).astype(np.float32),
    ]


def load_caffe_weights(model: keras.Model, path: str | Path, base_only: bool = False) -> None:
    """Load a `.caffemodel` into `model` in place, by Caffe layer name.

    Args:
        model: a model from `ssd_core.build_model` (either mode).
        path: the `.caffemodel` (a full SSD model, or the VGG-16 fc-reduced base).
        base_only: load only the backbone's base network (VGG-16: conv1_1 ... fc7) and keep
            every other layer as initialised.

    Raises:
        WeightFileError: a layer the model needs is missing or mis-shaped in the file.
    """
    blobs = read_caffemodel(path)
    names = assign.layers_to_load(model, base_only)
    weights = caffe_weights_for_model(blobs, model, names, source=str(path))
    assign.set_weights_checked(model, weights, source=str(path))
    assign.log_unused(blobs, names, source=str(path))


def _blob_to_array(blob: BlobProto) -> np.ndarray:
    if blob.HasField("shape"):
        shape = tuple(int(d) for d in blob.shape.dim)
    else:
        shape = (blob.num, blob.channels, blob.height, blob.width)
    values = blob.data if len(blob.data) else blob.double_data
    array = np.asarray(values, dtype=np.float32)
    if array.size != int(np.prod(shape)):
        raise assign.WeightFileError(
            f"blob of shape {shape} holds {array.size} values, expected {int(np.prod(shape))}"
        )
    return array.reshape(shape)


def _fill_blob(blob: BlobProto, array: np.ndarray, legacy: bool) -> None:
    if legacy:
        if array.ndim > 4:
            raise ValueError(f"legacy blobs are at most 4-D, got shape {array.shape}")
        num, channels, height, width = (1,) * (4 - array.ndim) + array.shape
        blob.num, blob.channels, blob.height, blob.width = num, channels, height, width
    else:
        blob.shape.dim.extend(int(d) for d in array.shape)
    # Appending millions of floats one by one takes seconds; the packed wire form of
    # `data` (field 5, length-delimited little-endian float32) parses in milliseconds.
    payload = array.astype("<f4").tobytes()
    blob.MergeFromString(_DATA_TAG + _varint(len(payload)) + payload)


_DATA_TAG = bytes([(5 << 3) | 2])  # BlobProto.data: field 5, wire type 2 (length-delimited)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _fit_legacy_shape(blob: np.ndarray, expected: tuple[int, ...]) -> np.ndarray:
    """Reshape a legacy 4-D blob, e.g. a bias (1, 1, 1, out), to `expected` if only unit
    dimensions differ; any other blob is returned unchanged for the shape check to judge."""
    if blob.shape == expected or blob.size != int(np.prod(expected)):
        return blob
    if [d for d in blob.shape if d != 1] == [d for d in expected if d != 1]:
        return blob.reshape(expected)
    return blob
