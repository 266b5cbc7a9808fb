"""Custom layers: numerics against NumPy, config round-trips with non-default values."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from ssd_core.layers import ChannelScale, ImageNormalization, L2Normalization


def _numpy_l2_normalise(x: np.ndarray, scale: np.ndarray, epsilon: float) -> np.ndarray:
    """Caffe Normalize (across_spatial false): per-pixel L2 norm over channels, times scale."""
    norm = np.sqrt(np.sum(x.astype(np.float64) ** 2, axis=-1, keepdims=True) + epsilon)
    return x / norm * scale


def test_l2_normalization_matches_numpy_with_learned_scale():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
    layer = L2Normalization(scale_init=20.0)
    layer.build(x.shape)
    scale = rng.uniform(1.0, 30.0, size=5).astype(np.float32)
    layer.scale.assign(scale)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer(x)), _numpy_l2_normalise(x, scale, 1e-10), rtol=1e-5
    )


def test_l2_normalization_initial_output_has_norm_of_the_initial_scale():
    x = np.random.default_rng(1).normal(size=(1, 2, 2, 8)).astype(np.float32)
    y = keras.ops.convert_to_numpy(L2Normalization(scale_init=7.0)(x))
    np.testing.assert_allclose(np.linalg.norm(y, axis=-1), 7.0, rtol=1e-5)


def test_l2_normalization_of_zero_features_is_zero_not_nan():
    y = keras.ops.convert_to_numpy(L2Normalization()(np.zeros((1, 2, 2, 3), np.float32)))
    assert np.all(y == 0.0)


def test_l2_normalization_config_round_trip_keeps_non_default_values():
    layer = L2Normalization(scale_init=3.5, epsilon=1e-6, name="norm_x")
    clone = L2Normalization.from_config(layer.get_config())
    assert (clone.scale_init, clone.epsilon, clone.name) == (3.5, 1e-6, "norm_x")


def test_image_normalization_subtracts_mean_divides_std_and_swaps_to_bgr():
    rgb = np.array([[[[10, 20, 30]]]], dtype=np.uint8)  # (1, 1, 1, 3)
    layer = ImageNormalization(mean=(1.0, 2.0, 3.0), std=(3.0, 2.0, 1.0), channel_order="bgr")
    out = keras.ops.convert_to_numpy(layer(rgb))
    # RGB ((10 - 1) / 3, (20 - 2) / 2, (30 - 3) / 1) = (3, 9, 27), then reversed to BGR.
    np.testing.assert_allclose(out[0, 0, 0], [27.0, 9.0, 3.0], rtol=1e-6)
    assert out.dtype == np.float32


def test_image_normalization_keeps_rgb_order_when_asked():
    rgb = np.array([[[[200.0, 100.0, 0.0]]]], dtype=np.float32)
    layer = ImageNormalization(mean=(100.0, 100.0, 100.0), std=(100.0, 50.0, 25.0))
    out = keras.ops.convert_to_numpy(layer(rgb))
    np.testing.assert_allclose(out[0, 0, 0], [1.0, 0.0, -4.0], rtol=1e-6)


def test_image_normalization_gives_same_result_for_uint8_and_float_input():
    pixels = np.random.default_rng(2).integers(0, 256, size=(2, 4, 4, 3))
    layer = ImageNormalization(mean=(123.0, 117.0, 104.0), channel_order="bgr")
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(layer(pixels.astype(np.uint8))),
        keras.ops.convert_to_numpy(layer(pixels.astype(np.float32))),
    )


def test_image_normalization_config_round_trip_keeps_non_default_values():
    layer = ImageNormalization(
        mean=(1.0, 2.0, 3.0), std=(4.0, 5.0, 6.0), channel_order="bgr", name="prep"
    )
    clone = ImageNormalization.from_config(layer.get_config())
    assert clone.mean == (1.0, 2.0, 3.0)
    assert clone.std == (4.0, 5.0, 6.0)
    assert clone.channel_order == "bgr"
    assert clone.name == "prep"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mean": (1.0, 2.0)}, "mean and std need 3 values"),
        ({"std": (1.0, 0.0, 1.0)}, "std values must be > 0"),
        ({"channel_order": "gbr"}, "channel_order must be one of"),
    ],
)
def test_image_normalization_rejects_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ImageNormalization(**kwargs)


def test_channel_scale_multiplies_and_shifts_every_channel():
    layer = ChannelScale()
    x = np.random.default_rng(3).normal(size=(2, 4, 5, 3)).astype(np.float32)
    layer.build(x.shape)
    layer.set_weights([np.array([2.0, -1.0, 0.5], np.float32), np.array([1.0, 0.0, -3.0])])
    expected = x * np.array([2.0, -1.0, 0.5]) + np.array([1.0, 0.0, -3.0])
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-6, atol=1e-6)


def test_channel_scale_config_round_trip_keeps_non_default_values():
    layer = ChannelScale(gamma_init=2.5, beta_init=-0.5, name="data_scale")
    clone = ChannelScale.from_config(layer.get_config())
    assert (clone.gamma_init, clone.beta_init, clone.name) == (2.5, -0.5, "data_scale")
    clone.build((None, 4))
    np.testing.assert_array_equal(clone.gamma.numpy(), 2.5)
    np.testing.assert_array_equal(clone.beta.numpy(), -0.5)
