"""Custom Keras layers of the SSD network: input normalisation, conv4_3 L2 normalisation and
the per-channel scale of Caffe's `Scale` layer.

All are registered under the `ssd_core` package, so `keras.saving.load_model` finds them once
`ssd_core` is imported.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from ssd_core.config import CHANNEL_ORDERS


@keras.saving.register_keras_serializable(package="ssd_core")
class ImageNormalization(keras.layers.Layer):
    """Turn RGB 0..255 images into the network's input: `(x - mean) / std`, then channel order.

    Args:
        mean: per-channel mean in RGB order, on the 0..255 scale.
        std: per-channel divisor in RGB order, on the 0..255 scale.
        channel_order: `"rgb"` or `"bgr"`, the channel order the network expects after
            normalisation (the Caffe VGG-16 weights expect BGR).

    Input: (B, H, W, 3) uint8 or float, RGB, 0..255. Output: (B, H, W, 3) float32.
    """

    def __init__(
        self,
        mean: Sequence[float] = (0.0, 0.0, 0.0),
        std: Sequence[float] = (1.0, 1.0, 1.0),
        channel_order: str = "rgb",
        **kwargs: Any,
    ) -> None:
        # Normalising in float32 keeps 0..255 inputs exact under a mixed-precision policy.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"mean and std need 3 values (RGB), got {mean} and {std}")
        if min(std) <= 0:
            raise ValueError(f"std values must be > 0, got {std}")
        if channel_order not in CHANNEL_ORDERS:
            raise ValueError(
                f"channel_order must be one of {CHANNEL_ORDERS}, got {channel_order!r}"
            )
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self.channel_order = channel_order

    def call(self, images: Any) -> Any:
        images = ops.cast(images, "float32")
        normalised = (images - ops.convert_to_tensor(self.mean)) / ops.convert_to_tensor(self.std)
        if self.channel_order == "bgr":
            normalised = ops.flip(normalised, axis=-1)
        return normalised

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"mean": self.mean, "std": self.std, "channel_order": self.channel_order})
        return config


@keras.saving.register_keras_serializable(package="ssd_core")
class L2Normalization(keras.layers.Layer):
    """L2-normalise every feature vector across channels, then scale it per channel.

    `y[..., c] = scale[c] * x[..., c] / sqrt(sum_c' x[..., c']^2 + epsilon)`, the Caffe
    `Normalize` layer with `across_spatial: false`, `channel_shared: false` that SSD puts on
    conv4_3 (ParseNet, Liu et al. 2015; SSD paper section 3.1, scale initialised to 20).

    Args:
        scale_init: initial value of every per-channel scale.
        epsilon: added to the squared norm before the square root (Caffe default 1e-10).

    Input and output: (B, H, W, C). Weight: `scale` of shape (C,).
    """

    def __init__(self, scale_init: float = 20.0, epsilon: float = 1e-10, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if epsilon < 0:
            raise ValueError(f"epsilon must be >= 0, got {epsilon}")
        self.scale_init = float(scale_init)
        self.epsilon = float(epsilon)

    def build(self, input_shape: tuple) -> None:
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"L2Normalization needs a known channel count, got {input_shape}")
        self.scale = self.add_weight(
            name="scale",
            shape=(channels,),
            initializer=keras.initializers.Constant(self.scale_init),
        )

    def call(self, features: Any) -> Any:
        squared_norm = ops.sum(ops.square(features), axis=-1, keepdims=True)
        return features * ops.rsqrt(squared_norm + self.epsilon) * self.scale

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"scale_init": self.scale_init, "epsilon": self.epsilon})
        return config


@keras.saving.register_keras_serializable(package="ssd_core")
class ChannelScale(keras.layers.Layer):
    """Per-channel affine map `y[..., c] = gamma[c] * x[..., c] + beta[c]`.

    The Caffe `Scale` layer as it follows every `BatchNorm` (axis 1, one axis, `bias_term:
    true`), which holds no affine part of its own.

    Args:
        gamma_init: initial value of every gamma.
        beta_init: initial value of every beta.

    Input and output: (B, ..., C). Weights: `gamma` (C,), `beta` (C,).
    """

    def __init__(self, gamma_init: float = 1.0, beta_init: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gamma_init = float(gamma_init)
        self.beta_init = float(beta_init)

    def build(self, input_shape: tuple) -> None:
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"ChannelScale needs a known channel count, got {input_shape}")
        self.gamma = self.add_weight(
            name="gamma",
            shape=(channels,),
            initializer=keras.initializers.Constant(self.gamma_init),
        )
        self.beta = self.add_weight(
            name="beta", shape=(channels,), initializer=keras.initializers.Constant(self.beta_init)
        )

    def call(self, features: Any) -> Any:
        return features * self.gamma + self.beta

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"gamma_init": self.gamma_init, "beta_init": self.beta_init})
        return config
