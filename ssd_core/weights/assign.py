"""Put named weight arrays into a Keras model, checking every layer and every shape first.

The converters (`caffe.py`, `ssd_keras.py`) turn a file into `{layer name: [arrays]}` in Keras
layout; this module decides which layers must be present, checks them all, and only then
writes them, so a bad file leaves the model untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence

import keras
import numpy as np

from ssd_core.backbones import base_layer_names

logger = logging.getLogger(__name__)


class WeightFileError(ValueError):
    """A weight file does not fit the model: a layer is missing or a weight has another shape."""


def weighted_layer_names(model: keras.Model) -> list[str]:
    """Names of the model's layers that own weights, in model order."""
    return [layer.name for layer in model.layers if layer.weights]


def layers_to_load(model: keras.Model, base_only: bool) -> list[str]:
    """The layers a converter must fill: all weighted layers, or the backbone's base network.

    The base is what the backbone reports (`ssd_core.backbones.base_layer_names`), e.g.
    VGG-16's conv1_1 .. fc7 ("fc-reduced": fc6 the 3x3 dilated conv, fc7 the 1x1 conv).

    Raises:
        WeightFileError: `base_only` on a model without its backbone's base layers.
    """
    names = weighted_layer_names(model)
    if not base_only:
        return names
    base = list(base_layer_names(model.ssd_config))
    missing = [name for name in base if name not in names]
    if missing:
        raise WeightFileError(
            f"base-only loading needs the {model.ssd_config.backbone} base layers; "
            f"model {model.name!r} lacks {missing}"
        )
    return base


def check_layer_present(name: str, available: Iterable[str], source: str) -> None:
    """Raise `WeightFileError` naming `name` if it is not among the file's layers."""
    if name not in set(available):
        raise WeightFileError(f"{source}: layer {name!r} is missing from the file")


def check_shape(
    layer: str, index: int, expected: Sequence[int], found: Sequence[int], source: str
) -> None:
    """Raise `WeightFileError` naming the layer, weight index and both shapes if they differ."""
    if tuple(expected) != tuple(found):
        raise WeightFileError(
            f"{source}: layer {layer!r} weight {index}: expected shape {tuple(expected)}, "
            f"found {tuple(found)}"
        )


def check_weight_count(layer: str, expected: int, found: int, source: str) -> None:
    """Raise `WeightFileError` if a layer holds another number of weight arrays than expected."""
    if expected != found:
        raise WeightFileError(
            f"{source}: layer {layer!r}: expected {expected} weight arrays, found {found}"
        )


def expected_shapes(model: keras.Model, name: str) -> list[tuple[int, ...]]:
    """Keras-layout shapes of layer `name`'s weights, in `layer.weights` order."""
    return [tuple(int(d) for d in weight.shape) for weight in model.get_layer(name).weights]


def set_weights_checked(
    model: keras.Model, weights: Mapping[str, Sequence[np.ndarray]], source: str
) -> None:
    """Check every array against the model, then assign them all (nothing is set on error).

    Args:
        model: the Keras model to fill.
        weights: layer name -> arrays in Keras layout and `layer.weights` order.
        source: the file name, for error messages.

    Raises:
        WeightFileError: a named layer is not in the model or an array has another shape.
    """
    model_layers = set(weighted_layer_names(model))
    for name, arrays in weights.items():
        if name not in model_layers:
            raise WeightFileError(f"{source}: model has no weighted layer {name!r}")
        shapes = expected_shapes(model, name)
        check_weight_count(name, len(shapes), len(arrays), source)
        for index, (shape, array) in enumerate(zip(shapes, arrays, strict=True)):
            check_shape(name, index, shape, array.shape, source)
    for name, arrays in weights.items():
        model.get_layer(name).set_weights([np.asarray(a, dtype=np.float32) for a in arrays])
    logger.info("loaded %d layers from %s", len(weights), source)


def log_unused(file_layers: Iterable[str], used: Iterable[str], source: str) -> None:
    """Log the file's weighted layers that the model did not take (e.g. VGG-16's fc8)."""
    unused = sorted(set(file_layers) - set(used))
    if unused:
        logger.warning("%s: %d weighted layers not used: %s", source, len(unused), unused)
