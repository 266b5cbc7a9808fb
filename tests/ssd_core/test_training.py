"""Training helpers: the warm-up multistep schedule and Caffe-style regularisation."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from ssd_core.losses import SSDLoss
from ssd_core.training import (
    NonFiniteLossError,
    Trainer,
    WarmupPiecewiseDecay,
    is_bias,
    weight_decay_term,
)


def test_schedule_warms_up_linearly_then_steps_down() -> None:
    schedule = WarmupPiecewiseDecay(1e-3, [10, 20], gamma=0.1, warmup_steps=4, warmup_factor=0.2)
    values = [float(schedule(step)) for step in (0, 2, 4, 9, 10, 19, 20, 100)]
    # warm-up: 1e-3 * (0.2 + 0.8 * step / 4); then 1e-3, 1e-4 from step 10, 1e-5 from step 20
    expected = [2e-4, 6e-4, 1e-3, 1e-3, 1e-4, 1e-4, 1e-5, 1e-5]
    np.testing.assert_allclose(values, expected, rtol=1e-5)


def test_schedule_config_round_trip() -> None:
    schedule = WarmupPiecewiseDecay(5e-3, [7, 9], gamma=0.5, warmup_steps=3, warmup_factor=0.3)
    restored = WarmupPiecewiseDecay.from_config(schedule.get_config())
    assert restored.get_config() == schedule.get_config()
    assert float(restored(8)) == pytest.approx(2.5e-3)


def test_schedule_rejects_unsorted_boundaries() -> None:
    with pytest.raises(ValueError, match="increasing"):
        WarmupPiecewiseDecay(1e-3, [20, 10])


def test_weight_decay_covers_kernels_not_biases() -> None:
    layer = keras.layers.Dense(2)
    layer.build((None, 3))
    layer.kernel.assign(np.full((3, 2), 2.0, np.float32))
    layer.bias.assign(np.full((2,), 100.0, np.float32))
    assert [is_bias(v) for v in layer.trainable_variables] == [False, True]
    # 0.5 * 5e-4 * (6 weights * 2^2)
    value = weight_decay_term(layer.trainable_variables, 5e-4)
    assert float(value) == pytest.approx(0.5 * 5e-4 * 24.0)
    assert float(weight_decay_term([], 5e-4)) == 0.0
    assert isinstance(value, tf.Tensor)


def toy_trainer(weight_decay: float) -> Trainer:
    """A two-anchor, three-class 'detector' of two Dense layers, SGD lr 1 without momentum."""
    inputs = keras.Input((2, 3))
    outputs = {
        "cls_logits": keras.layers.Dense(3, name="cls")(inputs),
        "bbox_regression": keras.layers.Dense(4, name="box")(inputs),
    }
    model = keras.Model(inputs, outputs)
    optimizer = keras.optimizers.SGD(learning_rate=1.0, momentum=0.0)
    return Trainer(model, optimizer, SSDLoss(), weight_decay, tf.distribute.get_strategy())


def toy_batch() -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    images = tf.constant(np.random.default_rng(0).normal(size=(1, 2, 3)), tf.float32)
    targets = {
        "cls_targets": tf.constant([[2, 0]], tf.int32),
        "box_targets": tf.constant([[[0.5, -0.5, 0.1, 0.2], [0.0, 0.0, 0.0, 0.0]]]),
    }
    return images, targets


def test_train_step_doubles_bias_learning_rate_and_decays_kernels() -> None:
    keras.utils.set_random_seed(0)
    trainer = toy_trainer(weight_decay=0.1)
    images, targets = toy_batch()
    variables = trainer.model.trainable_variables
    before = [v.numpy().copy() for v in variables]
    with tf.GradientTape() as tape:
        out = trainer.model(images)
        loss = trainer.loss(
            targets["cls_targets"],
            targets["box_targets"],
            out["cls_logits"],
            out["bbox_regression"],
        )["loss"]
    grads = [g.numpy() for g in tape.gradient(loss, variables)]
    trainer.train_step(images, targets)
    for var, old, grad in zip(variables, before, grads, strict=True):
        # SGD lr 1: bias -= 2 * grad (lr_mult 2, no decay); kernel -= grad + decay * kernel
        expected = old - 2.0 * grad if is_bias(var) else old - (grad + 0.1 * old)
        np.testing.assert_allclose(var.numpy(), expected, rtol=1e-5, atol=1e-6, err_msg=var.path)
    assert trainer.step == 1


def test_train_step_stops_on_nan_loss() -> None:
    trainer = toy_trainer(weight_decay=0.0)
    images, targets = toy_batch()
    with pytest.raises(NonFiniteLossError, match="loss became nan at step"):
        trainer.train_step(images * np.nan, targets)
