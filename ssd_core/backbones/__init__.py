"""Backbones: the feature extractors that produce SSD's predictor source layers."""

from __future__ import annotations

import math
from typing import Any

from ssd_core.config import SSDConfig


def feature_map_sizes(config: SSDConfig) -> tuple[tuple[int, int], ...]:
    """(height, width) of every predictor source layer, in `config.source_layers` order.

    Derived from the layer arithmetic of the backbone, so anchors can be generated without
    building the network; `tests/ssd_core/test_model.py` checks it against the built network.
    """
    height, width = config.image_size
    if config.backbone == "vgg16":
        ssd512 = uses_ssd512_extras(config)
        sizes = _vgg16_sizes(height, ssd512), _vgg16_sizes(width, ssd512)
    elif config.backbone == "ssd7":
        sizes = _ssd7_sizes(height), _ssd7_sizes(width)
    else:  # pragma: no cover - SSDConfig validates the backbone name
        raise ValueError(f"unknown backbone {config.backbone!r}")
    available = len(sizes[0])
    if config.num_layers > available:
        raise ValueError(
            f"backbone {config.backbone!r} has {available} predictor layers, "
            f"config asks for {config.num_layers}"
        )
    return tuple(zip(sizes[0][: config.num_layers], sizes[1][: config.num_layers], strict=True))


def build_backbone(config: SSDConfig, images: Any) -> dict[str, Any]:
    """The predictor source feature maps of `config.backbone` on symbolic `images`.

    Args:
        config: the model config.
        images: (B, H, W, 3) float32 normalised images (a Keras tensor).

    Returns:
        `{source_layer_name: (B, H_k, W_k, C_k) feature map}` in `config.source_layers` order.
    """
    # Imported here so that anchor generation does not import Keras.
    if config.backbone == "vgg16":
        from ssd_core.backbones.vgg16 import build_vgg16_ssd_features

        return build_vgg16_ssd_features(config, images)
    if config.backbone == "ssd7":
        from ssd_core.backbones.ssd7 import build_ssd7_features

        return build_ssd7_features(config, images)
    raise ValueError(f"unknown backbone {config.backbone!r}")  # pragma: no cover


def uses_ssd512_extras(config: SSDConfig) -> bool:
    """SSD512's extra layers (seven sources, conv10_2) rather than SSD300's (six sources)."""
    return config.backbone == "vgg16" and config.num_layers == 7


def _conv_out(size: int, kernel: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - kernel) // stride + 1


def _vgg16_sizes(size: int, ssd512: bool) -> list[int]:
    """conv4_3, fc7, conv6_2, conv7_2, conv8_2, conv9_2, conv10_2 sizes along one axis."""
    for _ in range(3):  # pool1..pool3: 2x2 stride 2, Caffe ceil mode
        size = math.ceil(size / 2)
    sizes = [size]  # conv4_3
    size = math.ceil(size / 2)  # pool4
    sizes.append(size)  # fc7 (pool5 is 3x3 stride 1 pad 1)
    size = _conv_out(size, 3, 2, 1)
    sizes.append(size)  # conv6_2: 3x3 stride 2 pad 1
    size = _conv_out(size, 3, 2, 1)
    sizes.append(size)  # conv7_2: 3x3 stride 2 pad 1
    if ssd512:  # SSD512 layout: conv8_2, conv9_2 stride 2 pad 1, conv10_2 4x4 pad 1
        size = _conv_out(size, 3, 2, 1)
        sizes.append(size)
        size = _conv_out(size, 3, 2, 1)
        sizes.append(size)
        sizes.append(_conv_out(size, 4, 1, 1))
    else:  # SSD300 layout: conv8_2, conv9_2 3x3 stride 1 pad 0
        size = _conv_out(size, 3, 1, 0)
        sizes.append(size)
        sizes.append(_conv_out(size, 3, 1, 0))
    return sizes


def _ssd7_sizes(size: int) -> list[int]:
    """conv4..conv7 sizes along one axis: 'same' convs, 2x2 'valid' max pools in between."""
    for _ in range(3):  # pool1..pool3
        size //= 2
    sizes = [size]
    for _ in range(3):  # pool4..pool6
        size //= 2
        sizes.append(size)
    return sizes
