"""The replicated train step and the checkpoint of a run.

Build a `Trainer` (and its model) inside `strategy.scope()`; `train_step` then runs one step on
a distributed batch. Every replica divides by the positives of the whole global batch (as
Caffe normalises by the batch's positives), so the replicas' losses add up to the global
batch's loss and their summed gradients are its gradient.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ssd_core import fields
from ssd_core.losses import SSDLoss
from ssd_core.training.regularisation import (
    KERNEL,
    learning_rate_multipliers,
    parameter_roles,
    weight_decay_term,
)

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class Trainer:
    """Model, optimizer and loss with a compiled train step and a checkpoint.

    Weight decay covers the kernels and the bias learning rate is doubled, both found by
    parameter role (`ssd_core.training.regularisation`).
    """

    model: keras.Model
    optimizer: keras.optimizers.Optimizer
    loss: SSDLoss
    weight_decay: float
    strategy: tf.distribute.Strategy

    def __post_init__(self) -> None:
        variables = self.model.trainable_variables
        roles = parameter_roles(self.model)
        self._kernels = [v for v, role in zip(variables, roles, strict=True) if role == KERNEL]
        self._lr_multipliers = learning_rate_multipliers(roles)
        self.optimizer.build(variables)
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
        local_positives = tf.reduce_sum(tf.cast(targets[fields.CLS_TARGETS] > 0, tf.int32))
        global_positives = tf.distribute.get_replica_context().all_reduce(
            tf.distribute.ReduceOp.SUM, local_positives
        )
        with tf.GradientTape() as tape:
            outputs = self.model(images, training=True)
            losses = self.loss(
                targets[fields.CLS_TARGETS],
                targets[fields.BOX_TARGETS],
                outputs[fields.CLS_LOGITS],
                outputs[fields.BBOX_REGRESSION],
                num_positives=global_positives,
            )
            decay = weight_decay_term(self._kernels, self.weight_decay)
            # Gradients are summed over replicas: the losses already add up to the global
            # batch's, the decay term is counted once.
            total = losses["loss"] + decay / replicas
            scaled = (
                self.optimizer.scale_loss(total) if hasattr(self.optimizer, "scale_loss") else total
            )
        grads = tape.gradient(scaled, variables)
        grads = [g * m for g, m in zip(grads, self._lr_multipliers, strict=True)]
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
