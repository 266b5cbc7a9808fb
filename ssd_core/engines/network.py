"""The two halves every engine runs: the raw network and the decoder.

ONNX Runtime and OpenVINO run the network - normalisation, backbone, heads; everything with
weights - exported from the model, and the TF engines run it from the Keras layers themselves;
the decoder runs after it on the raw outputs. The decoder does not convert well: tf2onnx turns
its NMS into an ONNX `Loop`, which OpenVINO's ONNX front end refuses, and the converted full
graph took 35-40 s to convert against 2-5 s for the network with no measured gain in ONNX
Runtime (README, "Inference engines"). The split also lets the request's score threshold reach
the decoder as an input, and times the two stages apart.

Two decoders, the same detections. `TFDecoder` is the reference itself
(`ssd_core.postprocess`, XLA-compiled) and decodes in every TF engine. `HostDecoder` serves the
engines whose raw outputs arrive as NumPy arrays (ONNX Runtime, OpenVINO): the NumPy port
(`ssd_core.postprocess_numpy`) when the call's candidates are few, as at a serving threshold,
where it has no TF call to pay for and decodes only the candidates; the `TFDecoder` when they
are many (a threshold of 0.01), where XLA's vectorised NMS is faster than NumPy's pairwise
comparisons.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ssd_core import fields
from ssd_core.anchors import generate_anchors
from ssd_core.config import SSDConfig
from ssd_core.decoder_config import DecoderConfig
from ssd_core.model import SSD, copy_model
from ssd_core.postprocess import SMALL_TOP_K, decode_detections
from ssd_core.postprocess_numpy import detections_from_scores, foreground_scores, most_candidates

DECODER_LAYER = "detection_decoder"


def network_model(model: SSD) -> SSD:
    """A training-mode (raw outputs) copy of `model` with its weights: the part engines export.

    Returns `model` itself if it already is one.
    """
    if not isinstance(model, SSD):
        raise TypeError(f"model must be an ssd_core SSD model, got {type(model).__name__}")
    if model.mode == "training":
        return model
    return copy_model(model, "training")


def network_layers(model: SSD) -> keras.Model:
    """The layers of `model` up to its heads as a functional model *sharing* its weights:
    images (B, H, W, 3) -> {cls_logits (B, N, C), bbox_regression (B, N, 4)}.

    Returns `model` itself for a training-mode model.
    """
    if not isinstance(model, SSD):
        raise TypeError(f"model must be an ssd_core SSD model, got {type(model).__name__}")
    if model.mode == "training":
        return model
    # The decoder's input is the heads' dict; Keras hands it back flattened (sorted keys).
    template = dict.fromkeys(fields.NETWORK_OUTPUTS, 0)
    raw = keras.tree.pack_sequence_as(template, model.get_layer(DECODER_LAYER).input)
    return keras.Model(model.input, raw, name=f"{model.name}_network")


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
    """The model's decoder (`decode_detections` with its `DecoderConfig`) as one compiled
    `tf.function` over raw outputs and the call's limits: cls_logits (B, N, C),
    bbox_regression (B, N, 4), score threshold (float32 scalar), max detections (int32 scalar)
    -> the padded outputs dict as NumPy arrays.

    Args:
        config: the model's `SSDConfig` (anchors, variances, classes).
        decoder_config: the model's decoder.
        jit_compile: compile it with XLA (once per batch size). On this project's 2-core
            AVX-512 CPU XLA decoded the shipped models 1.5-5x faster at batch 1 and 16
            (README, "Inference engines"); a GPU runs XLA as well.
    """

    def __init__(
        self, config: SSDConfig, decoder_config: DecoderConfig, jit_compile: bool = True
    ) -> None:
        anchors = generate_anchors(config)
        num_anchors = len(anchors)
        signature = [
            tf.TensorSpec((None, num_anchors, config.num_classes), tf.float32),
            tf.TensorSpec((None, num_anchors, 4), tf.float32),
            tf.TensorSpec((), tf.float32),
            tf.TensorSpec((), tf.int32),
        ]
        variances = config.variances

        @tf.function(input_signature=signature, jit_compile=jit_compile)
        def decode(
            cls_logits: tf.Tensor,
            bbox_regression: tf.Tensor,
            score_threshold: tf.Tensor,
            max_detections: tf.Tensor,
        ) -> dict[str, tf.Tensor]:
            return decode_detections(
                cls_logits,
                bbox_regression,
                anchors,
                variances,
                decoder_config,
                score_threshold=score_threshold,
                max_detections=max_detections,
            )

        self.jit_compile = jit_compile
        # Called as a concrete function with tensors: the polymorphic function's argument
        # binding cost 0.3 ms a call, half the shapes SSD7's whole decoding at batch 1.
        self._decode = decode.get_concrete_function()

    def __call__(
        self, cls_logits: Any, bbox_regression: Any, threshold: Any, count: Any
    ) -> dict[str, np.ndarray]:
        outputs = self._decode(
            float32_tensor(cls_logits),
            float32_tensor(bbox_regression),
            tf.constant(threshold, tf.float32),
            tf.constant(count, tf.int32),
        )
        return {key: outputs[key].numpy() for key in fields.DETECTION_OUTPUTS}


class HostDecoder:
    """The model's decoder for raw outputs that are NumPy arrays, with `TFDecoder`'s call:
    cls_logits (B, N, C), bbox_regression (B, N, 4), score threshold, max detections -> the
    padded outputs dict as NumPy arrays.

    Decodes in NumPy (`ssd_core.postprocess_numpy`) when no image and class ("caffe") or image
    ("fast") has more than `SMALL_TOP_K` scores above the threshold (the condition of the TF
    decoder's own shortcut), else calls the `TFDecoder`. Both give the same detections (scores
    and boxes to within 1e-6: NumPy's and TF's `exp` round differently); the choice is only
    speed: NumPy has no TF call to pay for, XLA compares hundreds of candidates faster. The
    first call of each batch size runs the `TFDecoder`, so that XLA compiles for it then (in
    the service's warm-up) rather than in the first request with many candidates.

    Args:
        config: the model's `SSDConfig` (anchors, variances, classes).
        decoder_config: the model's decoder.

    Attributes:
        fallback: the `TFDecoder` of calls with many candidates.
        last_path: "numpy" or "tf", the decoder of the last call ("" before the first).
    """

    def __init__(self, config: SSDConfig, decoder_config: DecoderConfig) -> None:
        self.anchors = generate_anchors(config)  # (N, 4) float32 normalised corners
        self.variances = config.variances
        self.decoder_config = decoder_config
        self.fallback = TFDecoder(config, decoder_config)
        self.last_path = ""
        self._compiled_batch_sizes: set[int] = set()

    def __call__(
        self, cls_logits: Any, bbox_regression: Any, threshold: Any, count: Any
    ) -> dict[str, np.ndarray]:
        scores = foreground_scores(np.asarray(cls_logits))  # (C-1, B, N)
        batch = scores.shape[1]
        many = most_candidates(scores, threshold, self.decoder_config.method) > SMALL_TOP_K
        if many or batch not in self._compiled_batch_sizes:
            self._compiled_batch_sizes.add(batch)
            self.last_path = "tf"
            return self.fallback(cls_logits, bbox_regression, threshold, count)
        self.last_path = "numpy"
        return detections_from_scores(
            scores,
            bbox_regression,
            self.anchors,
            self.variances,
            self.decoder_config,
            threshold,
            count,
        )


def float32_tensor(value: Any) -> tf.Tensor:
    """A float32 tensor of an array or tensor (cast if needed)."""
    if isinstance(value, tf.Tensor):
        return value if value.dtype == tf.float32 else tf.cast(value, tf.float32)
    return tf.constant(np.asarray(value, dtype=np.float32))
