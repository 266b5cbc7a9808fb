"""Keras building blocks that compute exactly what the Caffe layer of the same name computes.

Caffe pads convolutions by `pad` on every side; TF's "same" padding pads only bottom/right when
the total is odd and would shift every ported filter by one pixel. So a convolution uses "same"
only where that is symmetric (stride 1, `2 * pad == dilation * (kernel - 1)`), and explicit
`ZeroPadding2D` (named `<conv>_pad`) plus "valid" otherwise. Caffe's max pooling rounds the
output size up (ceil mode); `max_pool` pads bottom/right just enough for that.
"""

from __future__ import annotations

import math
from typing import Any

from keras import layers

from ssd_core.layers import ChannelScale

# Caffe BatchNormParameter default eps (caffe.proto).
CAFFE_BATCH_NORM_EPSILON = 1e-5


def conv(
    x: Any,
    name: str,
    filters: int,
    kernel: int,
    *,
    stride: int = 1,
    pad: int = 0,
    dilation: int = 1,
    bias: bool = True,
    relu: bool = True,
) -> Any:
    """Caffe `Convolution` (+ in-place `ReLU`) with `pad` zeros on every side of the input."""
    if stride == 1 and 2 * pad == dilation * (kernel - 1):
        padding = "same"  # symmetric here, and one op fewer than explicit padding
    else:
        padding = "valid"
        if pad:
            x = layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
    return layers.Conv2D(
        filters,
        kernel,
        strides=stride,
        padding=padding,
        dilation_rate=dilation,
        use_bias=bias,
        activation="relu" if relu else None,
        name=name,
    )(x)


def max_pool(x: Any, name: str, kernel: int, stride: int) -> Any:
    """Caffe `Pooling` (MAX, pad 0): output size `ceil((size - kernel) / stride) + 1`.

    The extra bottom/right cells are zeros, which equals Caffe's ignoring them because every
    max pooling here follows a ReLU (inputs >= 0) and every window holds a real cell.
    """
    height, width = int(x.shape[1]), int(x.shape[2])
    pad_h = _ceil_mode_padding(height, kernel, stride)
    pad_w = _ceil_mode_padding(width, kernel, stride)
    if pad_h or pad_w:
        x = layers.ZeroPadding2D(((0, pad_h), (0, pad_w)), name=f"{name}_pad")(x)
    return layers.MaxPooling2D(kernel, strides=stride, padding="valid", name=name)(x)


def _ceil_mode_padding(size: int, kernel: int, stride: int) -> int:
    out = math.ceil((size - kernel) / stride) + 1
    return (out - 1) * stride + kernel - size


def batch_norm_scale(x: Any, batch_norm: str, scale: str, relu: str | None = None) -> Any:
    """Caffe `BatchNorm` (global statistics, no affine part) + `Scale` (gamma, beta) (+ `ReLU`).

    The layers keep the Caffe names: `batch_norm` holds the moving mean and variance, `scale`
    the per-channel gamma and beta; `relu` names the activation layer when given.
    """
    x = layers.BatchNormalization(
        center=False, scale=False, epsilon=CAFFE_BATCH_NORM_EPSILON, name=batch_norm
    )(x)
    x = ChannelScale(name=scale)(x)
    if relu is not None:
        x = layers.ReLU(name=relu)(x)
    return x
