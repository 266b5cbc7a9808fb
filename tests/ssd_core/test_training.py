"""Training helpers: the warm-up multistep schedule and Caffe-style regularisation."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from ssd_core.training import WarmupPiecewiseDecay, is_bias, weight_decay_term


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
