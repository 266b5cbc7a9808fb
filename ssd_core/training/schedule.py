"""The SSD learning-rate schedule: linear warm-up, then Caffe's `multistep` decay."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="ssd_core")
class WarmupPiecewiseDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from `warmup_factor * base_lr` to `base_lr` over `warmup_steps`, then
    `base_lr * gamma ** (number of boundaries passed)` (Caffe `lr_policy: "multistep"`)."""

    def __init__(
        self,
        base_lr: float,
        boundaries: Sequence[int],
        gamma: float = 0.1,
        warmup_steps: int = 0,
        warmup_factor: float = 0.1,
    ) -> None:
        if list(boundaries) != sorted(boundaries):
            raise ValueError(f"boundaries must be increasing, got {list(boundaries)}")
        self.base_lr = float(base_lr)
        self.boundaries = [int(b) for b in boundaries]
        self.gamma = float(gamma)
        self.warmup_steps = int(warmup_steps)
        self.warmup_factor = float(warmup_factor)

    def __call__(self, step: tf.Tensor) -> tf.Tensor:
        step = tf.cast(step, tf.float32)
        passed = tf.reduce_sum(
            tf.cast(step >= tf.constant(self.boundaries, tf.float32), tf.float32)
        )
        lr = self.base_lr * tf.pow(self.gamma, passed)
        if self.warmup_steps > 0:
            progress = tf.minimum(step / self.warmup_steps, 1.0)
            lr *= self.warmup_factor + (1.0 - self.warmup_factor) * progress
        return lr

    def get_config(self) -> dict[str, Any]:
        return {
            "base_lr": self.base_lr,
            "boundaries": self.boundaries,
            "gamma": self.gamma,
            "warmup_steps": self.warmup_steps,
            "warmup_factor": self.warmup_factor,
        }
