"""TensorFlow engines: the model's own Keras layers under `tf.function` (`tf`) or compiled by
XLA (`tf-xla`), in fp32 or Keras mixed precision (`float16` on GPUs with tensor cores, `bf16`).

The network (the layers up to the heads, sharing the model's weights) is one `tf.function`
with a fixed input signature (any batch size, the model's input size, uint8), traced once; the
decoder is `TFDecoder` (XLA-compiled). XLA compiles once per batch size, which the service's
warm-up covers.

A Keras model that is not an `ssd_core` SSD but has its inference outputs (a test's stand-in)
runs whole, and the call's limits are applied to its outputs after (`limit_outputs`).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import tensorflow as tf

from ssd_core import fields
from ssd_core.engines.base import Engine, StageTimes
from ssd_core.engines.network import TFDecoder, network_layers
from ssd_core.model import SSD, copy_model

# Keras dtype policies of the precisions a TF engine runs (weights stay float32 variables).
POLICIES = {"fp32": "float32", "float16": "mixed_float16", "bf16": "mixed_bfloat16"}


class TFEngine(Engine):
    """The inference-mode `model` in TensorFlow.

    Args:
        model: an inference-mode SSD (or a stand-in, see the module docstring).
        precision: "fp32", "float16" or "bf16" (a copy built under the Keras mixed policy;
            the decoder casts to float32 first, so decoding stays fp32).
        jit_decoder: compile the decoder with XLA (`TFDecoder`).
    """

    name = "tf"
    jit_compile = False

    def __init__(self, model: Any, precision: str = "fp32", jit_decoder: bool = True) -> None:
        if precision not in POLICIES:
            raise ValueError(f"{self.name} runs precisions {tuple(POLICIES)}, got {precision!r}")
        super().__init__(model.ssd_config, model.decoder_config, precision)
        if precision != "fp32":
            model = copy_model(model, "inference", dtype_policy=POLICIES[precision])
        self.model = model
        self.trace_count = 0
        height, width = self.input_size
        signature = [tf.TensorSpec((None, height, width, 3), tf.uint8, name="images")]
        self.whole = not isinstance(model, SSD)
        served = model if self.whole else network_layers(model)
        keys = fields.DETECTION_OUTPUTS if self.whole else fields.NETWORK_OUTPUTS

        @tf.function(input_signature=signature, jit_compile=self.jit_compile)
        def forward(images: tf.Tensor) -> dict[str, tf.Tensor]:
            self.trace_count += 1  # Python side effect: runs once per trace, never per call
            outputs = served(images, training=False)
            return {key: outputs[key] for key in keys}

        self._forward = forward.get_concrete_function()  # see TFDecoder: cheaper calls
        self.decoder = (
            None if self.whole else TFDecoder(self.config, self.decoder_config, jit_decoder)
        )

    def network(self, images: np.ndarray) -> tuple[Any, Any]:
        outputs = self._forward(tf.constant(images))
        return outputs[fields.CLS_LOGITS], outputs[fields.BBOX_REGRESSION]

    def decode(
        self, cls_logits: Any, bbox_regression: Any, threshold: np.float32, count: np.int32
    ) -> dict[str, np.ndarray]:
        assert self.decoder is not None
        return self.decoder(cls_logits, bbox_regression, threshold, count)

    def run(
        self,
        images: Any,
        score_threshold: float | None = None,
        max_detections: int | None = None,
    ) -> dict[str, np.ndarray]:
        if not self.whole:
            return super().run(images, score_threshold, max_detections)
        pixels = self.check_images(images)
        threshold, count = self.limits(score_threshold, max_detections)
        started = time.perf_counter()
        outputs = {key: value.numpy() for key, value in self._forward(tf.constant(pixels)).items()}
        self.last_times = StageTimes(time.perf_counter() - started, 0.0)
        return limit_outputs(outputs, float(threshold), int(count))


class XLAEngine(TFEngine):
    """`TFEngine` with the network compiled by XLA too (the decoder always is)."""

    name = "tf-xla"
    jit_compile = True


def limit_outputs(
    outputs: dict[str, np.ndarray], threshold: float, count: int
) -> dict[str, np.ndarray]:
    """Padded outputs with only the leading rows scoring above `threshold`, at most `count`
    per image, kept (the rest zeroed): what the decoder returns when given these limits."""
    scores = outputs[fields.SCORES]
    rows = np.arange(scores.shape[1])[None, :]
    keep = (rows < outputs[fields.NUM_DETECTIONS][:, None]) & (scores > threshold) & (rows < count)
    return {
        fields.BOXES: np.where(keep[..., None], outputs[fields.BOXES], 0.0).astype(np.float32),
        fields.SCORES: np.where(keep, scores, 0.0).astype(np.float32),
        fields.LABELS: np.where(keep, outputs[fields.LABELS], 0).astype(np.int32),
        fields.NUM_DETECTIONS: keep.sum(axis=1).astype(np.int32),
    }


def gpu_has_tensor_cores() -> bool:
    """True if the first visible GPU has compute capability 7.0 or newer (Volta+)."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return False
    details: dict[str, Any] = tf.config.experimental.get_device_details(gpus[0])
    capability = details.get("compute_capability") or (0, 0)
    return tuple(capability) >= (7, 0)
