"""Class sub-sampling: turn a C-class SSD into one that predicts a chosen subset of its classes.

Fine-tuning a published model (VOC, COCO) on fewer classes starts better from the weights of
those classes than from fresh classifier heads. Every layer is copied unchanged except the
`<source>_mbox_conf` heads, whose output channels are laid out per anchor slot, Caffe style:
channel `box * C + label`. Keeping labels `[0, l_1, ..., l_k]` (background first) keeps, for
every box slot, the channels `box * C + l` in that order, so the new model's raw logits for
label j equal the old model's logits for label `l_j`, anchor by anchor.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from ssd_core.config import SSDConfig
from ssd_core.model import SSD

logger = logging.getLogger(__name__)


def kept_labels(config: SSDConfig, keep: Sequence[str]) -> list[int]:
    """Labels of the classes to keep, background (0) first, then `keep` in the given order.

    Raises:
        ValueError: `keep` is empty, repeats a name, names "background", or names a class the
            config does not have.
    """
    if isinstance(keep, str):
        raise ValueError(f"keep must be a sequence of class names, got the string {keep!r}")
    if not keep:
        raise ValueError("keep must name at least one class")
    duplicates = sorted({name for name in keep if list(keep).count(name) > 1})
    if duplicates:
        raise ValueError(f"keep names these classes more than once: {duplicates}")
    if "background" in keep:
        raise ValueError("keep lists foreground classes; background is always kept as label 0")
    unknown = [name for name in keep if name not in config.class_names]
    if unknown:
        raise ValueError(
            f"classes {unknown} are not in model {config.name!r}; its classes are "
            f"{list(config.class_names)}"
        )
    return [0, *(config.class_names.index(name) + 1 for name in keep)]


def conf_channel_indices(labels: Sequence[int], boxes: int, num_classes: int) -> np.ndarray:
    """Channels of a `<source>_mbox_conf` output to keep, in the new layout.

    Args:
        labels: labels to keep, in the new label order (background first).
        boxes: anchors per location of this source layer.
        num_classes: C of the original model, background included.

    Returns:
        (boxes * len(labels),) int64: `box * num_classes + label` for box, then label.
    """
    return np.array([box * num_classes + label for box in range(boxes) for label in labels])


def subsample_classes(model: SSD, keep: Sequence[str]) -> SSD:
    """A new model that predicts only the `keep` classes of `model`, with its weights.

    Args:
        model: a built `ssd_core` SSD (training or inference mode).
        keep: foreground class names of `model` to keep, in the order of the new labels
            1..len(keep); background stays label 0.

    Returns:
        A new `SSD` of the same mode and decoder settings whose `ssd_config` has
        `num_classes = len(keep) + 1` and `class_names = tuple(keep)`.

    Raises:
        ValueError: see `kept_labels`.
    """
    config = model.ssd_config
    labels = kept_labels(config, keep)
    new_config = config.replace(num_classes=len(labels), class_names=tuple(keep))
    new_model = SSD(
        new_config, mode=model.mode, decoder_config=model.decoder_config, name=model.name
    )
    boxes_of_head = {
        f"{source}_mbox_conf": boxes
        for source, boxes in zip(config.source_layers, config.boxes_per_location, strict=True)
    }
    for layer in model.layers:
        if not layer.weights:
            continue
        arrays = layer.get_weights()
        if layer.name in boxes_of_head:
            kernel, bias = arrays
            channels = conf_channel_indices(labels, boxes_of_head[layer.name], config.num_classes)
            arrays = [kernel[..., channels], bias[channels]]
        new_model.get_layer(layer.name).set_weights(arrays)
    logger.info(
        "sub-sampled %s from %d to %d classes: %s",
        model.name,
        config.num_classes,
        new_config.num_classes,
        list(new_config.label_names),
    )
    return new_model
