"""Training machinery: the SSD learning-rate schedule, Caffe-style regularisation, the train
step, checkpoints, and VOC mAP of a model on a dataset.

The recipe is the original one (Caffe `ssd_pascal.py` solver): SGD with momentum 0.9, base
learning rate 1e-3 divided by 10 at 80k and 100k iterations, weight decay 5e-4. Every conv
layer there has `param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }`: the
kernels are decayed, the biases are not and learn at twice the rate. Caffe adds
`decay * w` to the gradient, which is the gradient of `0.5 * decay * |w|^2` in the loss; the
loss form is used here so that mixed-precision loss scaling covers it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from ssd_core.data.records import ImageRecord
from ssd_core.losses import SSDLoss

logger = logging.getLogger(__name__)

BIAS_LR_MULT = 2.0  # Caffe ssd_pascal.py: biases lr_mult 2, decay_mult 0


# TensorBoard's scalar plugin tag, written with core `tf.summary.write` so that logging needs no
# `tensorboard` package (tensorflow-cpu does not pull it in).
_SCALAR_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
).SerializeToString()


def write_scalars(
    writer: tf.summary.SummaryWriter, values: dict[str, float], step: int, prefix: str
) -> None:
    """Write `values` as TensorBoard scalars `prefix/name` at `step`."""
    with writer.as_default(step=step):
        for name, value in values.items():
            tf.summary.write(
                f"{prefix}/{name}", tf.constant(value, tf.float32), step, _SCALAR_METADATA
            )
    writer.flush()


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


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


def is_bias(variable: tf.Variable) -> bool:
    """Biases (no decay, double learning rate), by Keras variable path."""
    return variable.path.split("/")[-1].startswith("bias")


def weight_decay_term(variables: Sequence[tf.Variable], weight_decay: float) -> tf.Tensor:
    """0.5 * weight_decay * sum of squared non-bias weights (Caffe L2 regularisation)."""
    squares = [
        tf.reduce_sum(tf.square(tf.cast(v, tf.float32))) for v in variables if not is_bias(v)
    ]
    return 0.5 * weight_decay * tf.add_n(squares) if squares else tf.constant(0.0)


@dataclass
class Trainer:
    """Model, optimizer and loss with a compiled train step and a checkpoint.

    Build it (and the model) inside `strategy.scope()`; `train_step` then runs one replicated
    step on a distributed batch. Every replica divides by the positives of the whole global
    batch (as Caffe normalises by the batch's positives), so the replicas' losses add up to the
    global batch's loss and their summed gradients are its gradient.
    """

    model: keras.Model
    optimizer: keras.optimizers.Optimizer
    loss: SSDLoss
    weight_decay: float
    strategy: tf.distribute.Strategy

    def __post_init__(self) -> None:
        self.optimizer.build(self.model.trainable_variables)
        self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer)
        self._step_fn = tf.function(self._distributed_step, reduce_retracing=True)

    @property
    def step(self) -> int:
        """Optimizer steps taken so far (restored with the checkpoint)."""
        return int(self.optimizer.iterations.numpy())

    def _replica_step(
        self, images: tf.Tensor, targets: dict[str, tf.Tensor]
    ) -> dict[str, tf.Tensor]:
        variables = self.model.trainable_variables
        replicas = self.strategy.num_replicas_in_sync
        local_positives = tf.reduce_sum(tf.cast(targets["cls_targets"] > 0, tf.int32))
        global_positives = tf.distribute.get_replica_context().all_reduce(
            tf.distribute.ReduceOp.SUM, local_positives
        )
        with tf.GradientTape() as tape:
            outputs = self.model(images, training=True)
            losses = self.loss(
                targets["cls_targets"],
                targets["box_targets"],
                outputs["cls_logits"],
                outputs["bbox_regression"],
                num_positives=global_positives,
            )
            decay = weight_decay_term(variables, self.weight_decay)
            # Gradients are summed over replicas: the losses already add up to the global
            # batch's, the decay term is counted once.
            total = losses["loss"] + decay / replicas
            scaled = (
                self.optimizer.scale_loss(total) if hasattr(self.optimizer, "scale_loss") else total
            )
        grads = tape.gradient(scaled, variables)
        grads = [
            g * BIAS_LR_MULT if is_bias(v) else g for g, v in zip(grads, variables, strict=True)
        ]
        self.optimizer.apply_gradients(zip(grads, variables, strict=True))
        return {**losses, "weight_decay": decay}

    def _distributed_step(self, images: Any, targets: Any) -> dict[str, tf.Tensor]:
        per_replica = self.strategy.run(self._replica_step, args=(images, targets))
        # Loss terms are shares of the global batch's loss; the decay is the same everywhere.
        return {
            name: self.strategy.reduce(
                tf.distribute.ReduceOp.MEAN
                if name == "weight_decay"
                else tf.distribute.ReduceOp.SUM,
                value,
                axis=None,
            )
            for name, value in per_replica.items()
        }

    def train_step(self, images: Any, targets: Any) -> dict[str, float]:
        """One optimizer step; raises `NonFiniteLossError` if the loss is NaN or infinite."""
        values = {k: float(v) for k, v in self._step_fn(images, targets).items()}
        if not np.isfinite(values["loss"]):
            raise NonFiniteLossError(
                f"loss became {values['loss']} at step {self.step} (losses: {values}); "
                "lower the learning rate (--lr), lengthen the warm-up, or check the data"
            )
        return values

    def learning_rate(self) -> float:
        lr = self.optimizer.learning_rate
        return float(lr(self.optimizer.iterations) if callable(lr) else lr)


def make_checkpoint_manager(
    trainer: Trainer, directory: str | Path, max_to_keep: int = 3
) -> tf.train.CheckpointManager:
    """A manager that numbers checkpoints by optimizer step; restores the latest if present."""
    manager = tf.train.CheckpointManager(
        trainer.checkpoint,
        str(directory),
        max_to_keep=max_to_keep,
        step_counter=trainer.optimizer.iterations,
    )
    if manager.latest_checkpoint:
        trainer.checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        logger.info("resumed from %s at step %d", manager.latest_checkpoint, trainer.step)
    return manager


def detect(
    model: keras.Model, records: Sequence[ImageRecord], batch_size: int = 8
) -> list[dict[str, Any]]:
    """Run a model on records; detections in `evaluate_voc` format (pixels)."""
    from ssd_core.evaluation.predict import predict_dataset
    from ssd_core.inference import Predictor

    return predict_dataset(Predictor.from_model(model), records, batch_size)
