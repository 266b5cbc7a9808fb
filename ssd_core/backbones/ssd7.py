"""SSD7: a small 7-layer feature extractor that trains from scratch on CPU in minutes.

The layout of the Keras SSD port's SSD7: seven "same" convolutions, each followed by batch
normalisation and ELU, with 2x2 "valid" max pooling between them; conv4..conv7 feed the heads.
"""

from __future__ import annotations

from typing import Any

from keras import layers

from ssd_core.backbones import Backbone, BackboneGraph

# (kernel size, channels) of conv1..conv7.
SSD7_CONVS = ((5, 32), (3, 48), (3, 64), (3, 64), (3, 48), (3, 48), (3, 32))
SSD7_SOURCES = ("conv4", "conv5", "conv6", "conv7")


def build_ssd7_graph(images: Any, layout: str) -> BackboneGraph:
    """SSD7 on `images` (B, H, W, 3) float32 normalised; one layout, `"ssd7"`.

    Returns:
        The source feature maps conv4..conv7 (for a 300x480 input: 37x60, 18x30, 9x15, 4x7);
        SSD7 trains from scratch, so its "base" is the whole network.
    """
    features = {}
    x = images
    for index, (kernel, channels) in enumerate(SSD7_CONVS, start=1):
        if index > 1:
            x = layers.MaxPooling2D(2, strides=2, padding="valid", name=f"pool{index - 1}")(x)
        x = layers.Conv2D(channels, kernel, padding="same", name=f"conv{index}")(x)
        x = layers.BatchNormalization(momentum=0.99, name=f"bn{index}")(x)
        x = layers.ELU(name=f"elu{index}")(x)
        features[f"conv{index}"] = x
    return BackboneGraph(features={name: features[name] for name in SSD7_SOURCES}, base=x)


BACKBONE = Backbone(name="ssd7", layouts={"ssd7": SSD7_SOURCES}, build_graph=build_ssd7_graph)
