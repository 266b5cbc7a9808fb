"""VGG-16 feature extractor of SSD300 / SSD512 with the Caffe layer names of the original model.

Layer names and kernel shapes match the released Caffe `VGG_VOC0712_SSD_*` models one to one,
so converted weights load by name. Caffe pads stride-2 convolutions by 1 on every side; TF's
"same" padding would pad only bottom/right for even inputs and shift every ported filter by one
pixel, so stride-2 convolutions (and the 4x4 conv10_2) use explicit symmetric `ZeroPadding2D`
and "valid" padding. At stride 1 with an odd kernel "same" is symmetric and is used as is.
"""

from __future__ import annotations

from typing import Any

from keras import layers

from ssd_core.backbones import uses_ssd512_extras
from ssd_core.config import SSDConfig
from ssd_core.layers import L2Normalization

SSD300_SOURCES = ("conv4_3_norm", "fc7", "conv6_2", "conv7_2", "conv8_2", "conv9_2")
SSD512_SOURCES = (*SSD300_SOURCES, "conv10_2")

# (block, number of 3x3 convs, channels) of VGG-16 up to conv5_3.
_VGG_BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))

# conv4_3 L2 normalisation, scale 20 (ParseNet; SSD paper section 3.1).
CONV4_3_NORM_SCALE = 20.0


def _conv(x: Any, name: str, filters: int, kernel: int, stride: int = 1, pad: int = 0) -> Any:
    """Caffe convolution + ReLU with `pad` zeros on every side of the input."""
    if stride == 1 and 2 * pad == kernel - 1:
        padding = "same"  # symmetric here, and one op fewer than explicit padding
    else:
        padding = "valid"
        if pad:
            x = layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
    return layers.Conv2D(
        filters, kernel, strides=stride, padding=padding, activation="relu", name=name
    )(x)


def vgg16_features(images: Any) -> tuple[Any, Any]:
    """VGG-16 trunk with SSD's modifications (pool5 3x3 s1, dilated fc6, 1x1 fc7).

    Args:
        images: (B, H, W, 3) float32 normalised images (the output of `ImageNormalization`).

    Returns:
        `(conv4_3, fc7)` feature maps: (B, ceil(H/8), ceil(W/8), 512) and
        (B, ceil(H/16), ceil(W/16), 1024).
    """
    x = images
    conv4_3 = None
    for block, n_convs, channels in _VGG_BLOCKS:
        for index in range(1, n_convs + 1):
            x = _conv(x, f"conv{block}_{index}", channels, 3, pad=1)
        if block == 4:
            conv4_3 = x
        if block < 5:
            # Caffe ceil-mode 2x2/2 pooling == TF "same" pooling (pads bottom/right when odd).
            x = layers.MaxPooling2D(2, strides=2, padding="same", name=f"pool{block}")(x)
    x = layers.MaxPooling2D(3, strides=1, padding="same", name="pool5")(x)
    # fc6 as a 3x3 convolution with dilation 6 (atrous, SSD paper section 3); "same" at stride 1
    # pads 6 on every side, as Caffe's pad: 6.
    x = layers.Conv2D(1024, 3, dilation_rate=6, padding="same", activation="relu", name="fc6")(x)
    fc7 = layers.Conv2D(1024, 1, activation="relu", name="fc7")(x)
    return conv4_3, fc7


def _extra_layers(fc7: Any, ssd512: bool) -> dict[str, Any]:
    """conv6_1 .. conv9_2 (SSD300) or .. conv10_2 (SSD512), each 1x1 reduce then 3x3."""
    features = {}
    x = _conv(fc7, "conv6_1", 256, 1)
    x = features["conv6_2"] = _conv(x, "conv6_2", 512, 3, stride=2, pad=1)
    x = _conv(x, "conv7_1", 128, 1)
    x = features["conv7_2"] = _conv(x, "conv7_2", 256, 3, stride=2, pad=1)
    for block in (8, 9):
        x = _conv(x, f"conv{block}_1", 128, 1)
        if ssd512:
            x = _conv(x, f"conv{block}_2", 256, 3, stride=2, pad=1)
        else:
            x = _conv(x, f"conv{block}_2", 256, 3)
        features[f"conv{block}_2"] = x
    if ssd512:
        x = _conv(x, "conv10_1", 128, 1)
        features["conv10_2"] = _conv(x, "conv10_2", 256, 4, pad=1)
    return features


def build_vgg16_ssd_features(config: SSDConfig, images: Any) -> dict[str, Any]:
    """The predictor source feature maps of SSD300 or SSD512.

    Args:
        config: a `backbone="vgg16"` config with the SSD300 (6) or SSD512 (7) source layers.
        images: (B, H, W, 3) float32 normalised images.

    Returns:
        `{source_layer_name: (B, H_k, W_k, C_k) feature map}` in `config.source_layers` order.

    Raises:
        ValueError: if `config.source_layers` is not the SSD300 or SSD512 list.
    """
    ssd512 = uses_ssd512_extras(config)
    expected = SSD512_SOURCES if ssd512 else SSD300_SOURCES
    if tuple(config.source_layers) != expected:
        raise ValueError(
            f"vgg16 backbone with {config.num_layers} sources needs source_layers {expected}, "
            f"got {config.source_layers}"
        )
    conv4_3, fc7 = vgg16_features(images)
    conv4_3_norm = L2Normalization(scale_init=CONV4_3_NORM_SCALE, name="conv4_3_norm")(conv4_3)
    features = {"conv4_3_norm": conv4_3_norm, "fc7": fc7, **_extra_layers(fc7, ssd512)}
    return {name: features[name] for name in config.source_layers}
