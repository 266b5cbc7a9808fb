"""Training helpers: the warm-up multistep schedule and Caffe-style regularisation by
parameter role."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from ssd_core import SSDConfig, build_model
from ssd_core.losses import SSDLoss
from ssd_core.training import (
    NonFiniteLossError,
    Trainer,
    WarmupPiecewiseDecay,
    parameter_roles,
    weight_decay_term,
)
from ssd_core.training.regularisation import BIAS, KERNEL, NORMALISATION


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
    inputs = keras.Input((3,))
    dense = keras.layers.Dense(2)
    model = keras.Model(inputs, dense(inputs))
    dense.kernel.assign(np.full((3, 2), 2.0, np.float32))
    dense.bias.assign(np.full((2,), 100.0, np.float32))
    assert parameter_roles(model) == [KERNEL, BIAS]
    # 0.5 * 5e-4 * (6 weights * 2^2)
    value = weight_decay_term([dense.kernel], 5e-4)
    assert float(value) == pytest.approx(0.5 * 5e-4 * 24.0)
    assert float(weight_decay_term([], 5e-4)) == 0.0
    assert isinstance(value, tf.Tensor)


@pytest.mark.parametrize("preset", ["ssd300_voc", "ssd300_res10_face", "ssd7"])
def test_normalisation_scales_are_neither_decayed_nor_biases(preset) -> None:
    model = build_model(SSDConfig.preset(preset))
    roles = dict(zip((v.path for v in model.trainable_variables), parameter_roles(model),
                     strict=True))  # fmt: skip
    normalisation = {path for path, role in roles.items() if role == NORMALISATION}
    if preset != "ssd7":
        # conv4_3's L2Normalization scale (named "scale", not "gamma" or "bias")
        assert "conv4_3_norm/scale" in normalisation
    if preset == "ssd7":  # BatchNormalization gamma and beta ("beta" is a bias by its value)
        assert {"bn1/gamma", "bn1/beta"} <= normalisation
    if preset == "ssd300_res10_face":  # Caffe's Scale after BatchNorm: ChannelScale gamma, beta
        assert {"data_scale/gamma", "data_scale/beta"} <= normalisation
    head = f"{model.ssd_config.source_layers[0]}_mbox_conf"
    assert (roles[f"{head}/kernel"], roles[f"{head}/bias"]) == (KERNEL, BIAS)
    assert all(role == KERNEL for path, role in roles.items() if path.endswith("/kernel"))


def test_a_variable_of_an_unknown_layer_type_is_refused() -> None:
    class Gain(keras.layers.Layer):
        def build(self, input_shape):
            self.gain = self.add_weight(name="gain", shape=(1,))

        def call(self, x):
            return x * self.gain

    inputs = keras.Input((3,))
    model = keras.Model(inputs, Gain(name="gain_layer")(inputs))
    with pytest.raises(ValueError, match=r"'gain_layer' \(Gain\) has a trainable variable"):
        parameter_roles(model)


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
    roles = parameter_roles(trainer.model)
    for var, role, old, grad in zip(variables, roles, before, grads, strict=True):
        # SGD lr 1: bias -= 2 * grad (lr_mult 2, no decay); kernel -= grad + decay * kernel
        expected = old - 2.0 * grad if role == BIAS else old - (grad + 0.1 * old)
        np.testing.assert_allclose(var.numpy(), expected, rtol=1e-5, atol=1e-6, err_msg=var.path)
    assert trainer.step == 1


def test_train_step_stops_on_nan_loss() -> None:
    trainer = toy_trainer(weight_decay=0.0)
    images, targets = toy_batch()
    with pytest.raises(NonFiniteLossError, match="loss became nan at step"):
        trainer.train_step(images * np.nan, targets)
