"""Shared fixtures of the weight-converter tests: a random SSD300 VOC weight set in Caffe
layout, and a plain NumPy forward of the layers the tests check (Caffe semantics, NCHW)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from ssd_core import SSDConfig, build_model

# Caffe's VGG-16 input: BGR channel order, ImageNet mean (B, G, R) = (104, 117, 123).
CAFFE_MEAN_BGR = np.array([104.0, 117.0, 123.0])

# Blob shapes of the released SSD300 VOC model, (out, in, kh, kw): 4 boxes x 21 classes.
KNOWN_CAFFE_SHAPES = {
    "conv1_1": [(64, 3, 3, 3), (64,)],
    "conv4_3_norm": [(512,)],
    "conv4_3_norm_mbox_conf": [(84, 512, 3, 3), (84,)],
    "fc6": [(1024, 512, 3, 3), (1024,)],
    "fc7": [(1024, 1024, 1, 1), (1024,)],
}


def _caffe_shape(keras_shape: tuple[int, ...]) -> tuple[int, ...]:
    if len(keras_shape) == 4:
        kh, kw, c_in, c_out = keras_shape
        return (c_out, c_in, kh, kw)
    return keras_shape


@pytest.fixture(scope="session")
def ssd300_voc_config() -> SSDConfig:
    return SSDConfig.preset("ssd300_voc")


@pytest.fixture(scope="session")
def random_caffe_blobs(ssd300_voc_config) -> dict[str, list[np.ndarray]]:
    """Every weighted layer of SSD300 VOC, random, in Caffe layout (He-scaled kernels so the
    activations stay finite through the VGG trunk)."""
    model = build_model(ssd300_voc_config)
    rng = np.random.default_rng(7)
    blobs = {}
    for layer in model.layers:
        if not layer.weights:
            continue
        arrays = []
        for weight in layer.weights:
            shape = _caffe_shape(tuple(int(d) for d in weight.shape))
            if len(shape) == 4:
                std = np.sqrt(2.0 / (shape[1] * shape[2] * shape[3]))
                arrays.append(rng.normal(0.0, std, size=shape).astype(np.float32))
            elif layer.name == "conv4_3_norm":
                arrays.append(rng.uniform(5.0, 30.0, size=shape).astype(np.float32))
            else:
                arrays.append(rng.normal(0.0, 0.1, size=shape).astype(np.float32))
        blobs[layer.name] = arrays
    for name, shapes in KNOWN_CAFFE_SHAPES.items():
        assert [a.shape for a in blobs[name]] == shapes, name
    return blobs


def _conv2d_chw(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, pad: int) -> np.ndarray:
    """Caffe convolution, stride 1: x (C, H, W), weight (O, C, kh, kw) -> (O, H', W'), float64."""
    padded = np.pad(x.astype(np.float64), ((0, 0), (pad, pad), (pad, pad)))
    kh, kw = weight.shape[2:]
    windows = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(1, 2))
    # windows: (C, H', W', kh, kw)
    out = np.tensordot(weight.astype(np.float64), windows, axes=([1, 2, 3], [0, 3, 4]))
    return out + bias.astype(np.float64)[:, None, None]


def _caffe_input(image_rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB 0..255 -> (3, H, W) BGR minus the Caffe mean, what Caffe's conv1_1 reads."""
    bgr = image_rgb[..., ::-1].astype(np.float64) - CAFFE_MEAN_BGR
    return bgr.transpose(2, 0, 1)


def _l2_normalise_chw(x: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Caffe Normalize (across_spatial false, channel_shared false) on (C, H, W)."""
    x = x.astype(np.float64)
    norm = np.sqrt(np.sum(x**2, axis=0, keepdims=True) + 1e-10)
    return x / norm * scale.astype(np.float64)[:, None, None]


@pytest.fixture(scope="session")
def numpy_caffe():
    """NumPy reference ops with Caffe semantics on (C, H, W) arrays."""
    return SimpleNamespace(
        conv2d=_conv2d_chw,
        relu=lambda x: np.maximum(x, 0.0),
        caffe_input=_caffe_input,
        l2_normalise=_l2_normalise_chw,
    )


def assert_close_relative(actual: np.ndarray, expected: np.ndarray, rtol: float = 1e-4) -> None:
    """Elementwise |a - e| <= rtol * max|e| (relative to the tensor's scale, so entries near
    zero after a ReLU do not demand an impossible relative precision)."""
    scale = float(np.max(np.abs(expected)))
    assert scale > 0, "reference is all zeros; the check would be vacuous"
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


@pytest.fixture(scope="session")
def close_relative():
    return assert_close_relative
