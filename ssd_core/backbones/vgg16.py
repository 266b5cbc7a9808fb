"""VGG-16 feature extractor of SSD300 / SSD512 with the Caffe layer names of the original model.

Layer names and kernel shapes match the released Caffe `VGG_VOC0712_SSD_*` models one to one,
so converted weights load by name. Convolutions pad as Caffe does (`caffe_ops.conv`: explicit
symmetric padding for the stride-2 convolutions and the 4x4 conv10_2).
"""

from __future__ import annotations

from typing import Any

from keras import layers

from ssd_core.backbones import Backbone, BackboneGraph
from ssd_core.backbones.caffe_ops import conv
from ssd_core.layers import L2Normalization

SSD300_SOURCES = ("conv4_3_norm", "fc7", "conv6_2", "conv7_2", "conv8_2", "conv9_2")
SSD512_SOURCES = (*SSD300_SOURCES, "conv10_2")

# (block, number of 3x3 convs, channels) of VGG-16 up to conv5_3.
_VGG_BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))

# conv4_3 L2 normalisation, scale 20 (ParseNet; SSD paper section 3.1).
CONV4_3_NORM_SCALE = 20.0


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
            x = conv(x, f"conv{block}_{index}", channels, 3, pad=1)
        if block == 4:
            conv4_3 = x
        if block < 5:
            # Caffe ceil-mode 2x2/2 pooling == TF "same" pooling (pads bottom/right when odd).
            x = layers.MaxPooling2D(2, strides=2, padding="same", name=f"pool{block}")(x)
    x = layers.MaxPooling2D(3, strides=1, padding="same", name="pool5")(x)
    # fc6 as a 3x3 convolution with dilation 6 (atrous, SSD paper section 3); "same" at stride 1
    # pads 6 on every side, as Caffe's pad: 6.
    x = conv(x, "fc6", 1024, 3, pad=6, dilation=6)
    fc7 = conv(x, "fc7", 1024, 1)
    return conv4_3, fc7


def _extra_layers(fc7: Any, ssd512: bool) -> dict[str, Any]:
    """conv6_1 .. conv9_2 (SSD300) or .. conv10_2 (SSD512), each 1x1 reduce then 3x3."""
    features = {}
    x = conv(fc7, "conv6_1", 256, 1)
    x = features["conv6_2"] = conv(x, "conv6_2", 512, 3, stride=2, pad=1)
    x = conv(x, "conv7_1", 128, 1)
    x = features["conv7_2"] = conv(x, "conv7_2", 256, 3, stride=2, pad=1)
    for block in (8, 9):
        x = conv(x, f"conv{block}_1", 128, 1)
        if ssd512:
            x = conv(x, f"conv{block}_2", 256, 3, stride=2, pad=1)
        else:
            x = conv(x, f"conv{block}_2", 256, 3)
        features[f"conv{block}_2"] = x
    if ssd512:
        x = conv(x, "conv10_1", 128, 1)
        features["conv10_2"] = conv(x, "conv10_2", 256, 4, pad=1)
    return features


def build_vgg16_graph(images: Any, layout: str) -> BackboneGraph:
    """VGG-16 plus SSD300 (`layout="ssd300"`) or SSD512 (`"ssd512"`) extra layers.

    Args:
        images: (B, H, W, 3) float32 normalised images.
        layout: `"ssd300"` (sources down to conv9_2) or `"ssd512"` (down to conv10_2).

    Returns:
        The source feature maps (`SSD300_SOURCES` / `SSD512_SOURCES`); the base ends at fc7.
    """
    conv4_3, fc7 = vgg16_features(images)
    conv4_3_norm = L2Normalization(scale_init=CONV4_3_NORM_SCALE, name="conv4_3_norm")(conv4_3)
    features = {
        "conv4_3_norm": conv4_3_norm,
        "fc7": fc7,
        **_extra_layers(fc7, ssd512=layout == "ssd512"),
    }
    return BackboneGraph(features=features, base=fc7)


BACKBONE = Backbone(
    name="vgg16",
    layouts={"ssd300": SSD300_SOURCES, "ssd512": SSD512_SOURCES},
    build_graph=build_vgg16_graph,
)
