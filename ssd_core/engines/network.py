"""The two halves an exported engine runs: the raw network (exported) and the TF decoder.

ONNX Runtime and OpenVINO run the network - normalisation, backbone, heads; everything with
weights - and the TF decoder (`ssd_core.postprocess`, the reference itself) runs after it on the
raw outputs. The decoder does not convert well: tf2onnx turns its NMS into an ONNX `Loop`,
which OpenVINO's ONNX front end refuses, and the converted full graph took 35-40 s to convert
against 2-5 s for the network with no measured gain in ONNX Runtime (README, "Engines").
The split also keeps every engine's decoding bit-identical to TF's for identical raw outputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from ssd_core import fields
from ssd_core.model import SSD, copy_model


def network_model(model: SSD) -> SSD:
    """A training-mode (raw outputs) copy of `model` with its weights: the part engines export.

    Returns `model` itself if it already is one.
    """
    if not isinstance(model, SSD):
        raise TypeError(f"model must be an ssd_core SSD model, got {type(model).__name__}")
    if model.mode == "training":
        return model
    return copy_model(model, "training")


def network_function(model: SSD) -> tf.types.experimental.PolymorphicFunction:
    """The network as a `tf.function` over `images` (B, H, W, 3) uint8, the export entry point.

    Returns a dict `cls_logits` (B, N, C) float32 logits and `bbox_regression` (B, N, 4) float32
    box deltas.
    """
    raw = network_model(model)
    height, width = raw.ssd_config.image_size
    signature = [tf.TensorSpec((None, height, width, 3), tf.uint8, name="images")]

    @tf.function(input_signature=signature)
    def network(images: tf.Tensor) -> dict[str, tf.Tensor]:
        outputs = raw(tf.cast(images, tf.float32), training=False)
        return {key: outputs[key] for key in fields.NETWORK_OUTPUTS}

    return network


class TFDecoder:
    """The model's own decoder (`DetectionDecoder` with its decoder options) as a compiled
    `tf.function` over raw outputs: cls_logits (B, N, C), bbox_regression (B, N, 4) -> the
    padded outputs dict as NumPy arrays."""

    def __init__(self, model: SSD) -> None:
        from ssd_core.anchors import generate_anchors

        decoder = _decoder_layer(model)
        config = model.ssd_config
        num_anchors = len(generate_anchors(config))
        signature = [
            tf.TensorSpec((None, num_anchors, config.num_classes), tf.float32),
            tf.TensorSpec((None, num_anchors, 4), tf.float32),
        ]

        @tf.function(input_signature=signature)
        def decode(cls_logits: tf.Tensor, bbox_regression: tf.Tensor) -> dict[str, tf.Tensor]:
            return decoder({fields.CLS_LOGITS: cls_logits, fields.BBOX_REGRESSION: bbox_regression})

        self._decode = decode

    def __call__(self, cls_logits: Any, bbox_regression: Any) -> dict[str, np.ndarray]:
        outputs = self._decode(
            np.asarray(cls_logits, dtype=np.float32), np.asarray(bbox_regression, np.float32)
        )
        return {key: value.numpy() for key, value in outputs.items()}


def _decoder_layer(model: SSD) -> Any:
    from ssd_core.postprocess import DetectionDecoder

    return DetectionDecoder(model.ssd_config, model.decoder_config, name="detection_decoder")
