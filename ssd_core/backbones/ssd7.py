"""SSD7: a small 7-layer feature extractor that trains from scratch on CPU in minutes.

The layout of the Keras SSD port's SSD7: seven "same" convolutions, each followed by batch
normalisation and ELU, with 2x2 "valid" max pooling between them; conv4..conv7 feed the heads.
"""

from __future__ import annotations

from typing import Any

from keras import layers

from ssd_core.config import SSDConfig

# (kernel size, channels) of conv1..conv7.
SSD7_CONVS = ((5, 32), (3, 48), (3, 64), (3, 64), (3, 48), (3, 48), (3, 32))
SSD7_SOURCES = ("conv4", "conv5", "conv6", "conv7")


def build_ssd7_features(config: SSDConfig, images: Any) -> dict[str, Any]:
    """The predictor source feature maps of SSD7.

    Args:
        config: a `backbone="ssd7"` config whose `source_layers` are a prefix of
            conv4, conv5, conv6, conv7.
        images: (B, H, W, 3) float32 normalised images.

    Returns:
        `{source_layer_name: (B, H_k, W_k, C_k) feature map}` in `config.source_layers` order;
        for a 300x480 input: 37x60, 18x30, 9x15, 4x7.

    Raises:
        ValueError: if `config.source_layers` is not a prefix of the SSD7 sources.
    """
    expected = SSD7_SOURCES[: config.num_layers]
    if tuple(config.source_layers) != expected:
        raise ValueError(
            f"ssd7 backbone with {config.num_layers} sources needs source_layers {expected}, "
            f"got {config.source_layers}"
        )
    features = {}
    x = images
    for index, (kernel, channels) in enumerate(SSD7_CONVS, start=1):
        if index > 1:
            x = layers.MaxPooling2D(2, strides=2, padding="valid", name=f"pool{index - 1}")(x)
        x = layers.Conv2D(channels, kernel, padding="same", name=f"conv{index}")(x)
        x = layers.BatchNormalization(momentum=0.99, name=f"bn{index}")(x)
        x = layers.ELU(name=f"elu{index}")(x)
        features[f"conv{index}"] = x
    return {name: features[name] for name in config.source_layers}
