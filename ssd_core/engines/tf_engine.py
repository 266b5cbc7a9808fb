"""TensorFlow engines: the inference model under `tf.function` (`tf`) or compiled by XLA
(`tf-xla`), in fp32 or Keras mixed precision (`float16` on GPUs with tensor cores, `bf16`).

One `tf.function` with a fixed input signature (any batch size, the model's input size,
uint8) is traced once; XLA compiles once per batch size, which the service's warm-up covers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from ssd_core import fields
from ssd_core.engines.base import Engine
from ssd_core.model import SSD, copy_model

# Keras dtype policies of the precisions a TF engine runs (weights stay float32 variables).
POLICIES = {"fp32": "float32", "float16": "mixed_float16", "bf16": "mixed_bfloat16"}


class TFEngine(Engine):
    """The inference-mode `model` under `tf.function`.

    Args:
        model: an inference-mode SSD.
        precision: "fp32", "float16" or "bf16" (a copy built under the Keras mixed policy;
            the decoder casts to float32 first, so decoding stays fp32).
    """

    name = "tf"
    jit_compile = False

    def __init__(self, model: SSD, precision: str = "fp32") -> None:
        if precision not in POLICIES:
            raise ValueError(f"{self.name} runs precisions {tuple(POLICIES)}, got {precision!r}")
        super().__init__(model.ssd_config, precision)
        self.model = (
            model
            if precision == "fp32"
            else copy_model(model, "inference", dtype_policy=POLICIES[precision])
        )
        self.trace_count = 0
        height, width = self.input_size
        signature = [tf.TensorSpec((None, height, width, 3), tf.uint8, name="images")]
        served = self.model

        @tf.function(input_signature=signature, jit_compile=self.jit_compile)
        def forward(images: tf.Tensor) -> dict[str, tf.Tensor]:
            self.trace_count += 1  # Python side effect: runs once per trace, never per call
            outputs = served(images, training=False)
            return {key: outputs[key] for key in fields.DETECTION_OUTPUTS}

        self._forward = forward

    def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        outputs = self._forward(self.check_images(images))
        return {key: value.numpy() for key, value in outputs.items()}


class XLAEngine(TFEngine):
    """`TFEngine` with the whole graph (network and decoder) compiled by XLA."""

    name = "tf-xla"
    jit_compile = True


def gpu_has_tensor_cores() -> bool:
    """True if the first visible GPU has compute capability 7.0 or newer (Volta+)."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return False
    details: dict[str, Any] = tf.config.experimental.get_device_details(gpus[0])
    capability = details.get("compute_capability") or (0, 0)
    return tuple(capability) >= (7, 0)
