"""Which parameters are decayed and which learn faster, decided by what each parameter *is*.

The recipe is Caffe's `ssd_pascal.py`: every convolution has `param { lr_mult: 1 decay_mult:
1 } param { lr_mult: 2 decay_mult: 0 }`, so kernels are decayed (weight decay 5e-4) and biases
are not and learn at twice the rate. Caffe adds `decay * w` to the gradient, the gradient of
`0.5 * decay * |w|^2` in the loss; the loss form is used here so that mixed-precision loss
scaling covers it.

A parameter's role comes from the layer that owns it, never from its name: a kernel is the
`kernel` of a Dense / convolution layer, a bias its `bias`, and every parameter of a
normalisation layer (`BatchNormalization` gamma and beta, the conv4_3 `L2Normalization` scale,
Caffe's `ChannelScale`) is a normalisation parameter, neither decayed nor faster. This follows
torchvision's detection references (`norm_weight_decay`, 0 by default); Caffe's prototxt gives
the `Normalize` layer no `param`, so Caffe decays conv4_3's scale, which starts at 20 and which
decay would pull towards 0. A trainable parameter of any other layer is refused, so a new
layer type cannot be decayed by accident.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import keras
import tensorflow as tf

from ssd_core.layers import ChannelScale, L2Normalization

KERNEL, BIAS, NORMALISATION = "kernel", "bias", "normalisation"
BIAS_LR_MULT = 2.0  # Caffe ssd_pascal.py: biases lr_mult 2, decay_mult 0
NORMALISATION_LAYERS: tuple[type, ...] = (
    keras.layers.BatchNormalization,
    keras.layers.LayerNormalization,
    keras.layers.GroupNormalization,
    L2Normalization,
    ChannelScale,
)
# Attributes holding the kernel of Keras' weighted layers (Dense, Conv*, DepthwiseConv2D,
# SeparableConv2D).
_KERNEL_ATTRIBUTES = ("kernel", "depthwise_kernel", "pointwise_kernel")


def _leaf_layers(layer: Any) -> Iterator[Any]:
    """The layers nested in `layer` (itself if none) that have no layers nested in them."""
    nested = getattr(layer, "layers", None) or getattr(layer, "_layers", None) or []
    if not nested:
        yield layer
    for child in nested:
        yield from _leaf_layers(child)


def _role(layer: Any, variable: Any) -> str:
    if isinstance(layer, NORMALISATION_LAYERS):
        return NORMALISATION
    if variable is getattr(layer, "bias", None):
        return BIAS
    if any(variable is getattr(layer, name, None) for name in _KERNEL_ATTRIBUTES):
        return KERNEL
    raise ValueError(
        f"layer {layer.name!r} ({type(layer).__name__}) has a trainable variable "
        f"{variable.path!r} of no known role (kernel, bias, normalisation); add its layer "
        "type to ssd_core.training.regularisation"
    )


def parameter_roles(model: keras.Model) -> list[str]:
    """The role (`KERNEL`, `BIAS`, `NORMALISATION`) of each of `model.trainable_variables`,
    in that order.

    Raises:
        ValueError: a trainable variable whose layer is of a type with no known roles.
    """
    roles: dict[int, str] = {}
    for layer in _leaf_layers(model):
        for variable in layer.trainable_variables:
            roles[id(variable)] = _role(layer, variable)
    unowned = [v.path for v in model.trainable_variables if id(v) not in roles]
    if unowned:
        raise ValueError(f"trainable variables {unowned} belong to no layer of known roles")
    return [roles[id(variable)] for variable in model.trainable_variables]


def weight_decay_term(kernels: Sequence[tf.Variable], weight_decay: float) -> tf.Tensor:
    """0.5 * weight_decay * the sum of squared kernel weights (Caffe's L2 regularisation)."""
    squares = [tf.reduce_sum(tf.square(tf.cast(v, tf.float32))) for v in kernels]
    return 0.5 * weight_decay * tf.add_n(squares) if squares else tf.constant(0.0)


def learning_rate_multipliers(roles: Sequence[str]) -> list[float]:
    """Per-parameter gradient multipliers: `BIAS_LR_MULT` for biases, 1 otherwise."""
    return [BIAS_LR_MULT if role == BIAS else 1.0 for role in roles]
