"""Shared fixtures of the weight-converter tests: a random SSD300 VOC weight set in Caffe
layout, the same set written and loaded through each converter (Caffe `.caffemodel`, ssd_keras
HDF5), and a plain NumPy forward of the layers the tests check (Caffe semantics, NCHW).

ssd_keras files are written with h5py in the layout Keras 2 `save_weights` produces: root
attribute `layer_names`, one group per layer with attribute `weight_names`, datasets at
`<layer>/<layer>/kernel:0`.
"""

from __future__ import annotations

from types import SimpleNamespace

import h5py
import keras
import numpy as np
import pytest

from ssd_core import SSDConfig, build_model
from ssd_core.weights import load_caffe_weights, load_ssd_keras_weights, write_caffemodel

# Caffe's VGG-16 input: BGR channel order, ImageNet mean (B, G, R) = (104, 117, 123).
CAFFE_MEAN_BGR = np.array([104.0, 117.0, 123.0])

# The layers of the VGG-16 "fc-reduced" base (VGG_ILSVRC_16_layers_fc_reduced.caffemodel),
# what base-only loading fills.
VGG16_BASE_LAYERS = (
    "conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3",
    "conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3", "fc6", "fc7",
)  # fmt: skip

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


def _to_keras_layout(arrays):
    """Caffe (out, in, kh, kw) kernels -> Keras 2 (kh, kw, in, out); vectors unchanged."""
    return [a.transpose(2, 3, 1, 0) if a.ndim == 4 else a for a in arrays]


@pytest.fixture(scope="module")
def keras_weights(random_caffe_blobs) -> dict[str, list[np.ndarray]]:
    """`random_caffe_blobs` in Keras 2 layout, as an ssd_keras HDF5 file holds them."""
    return {name: _to_keras_layout(arrays) for name, arrays in random_caffe_blobs.items()}


def write_keras2_weights(group: h5py.Group, weights: dict, split_layer_names: bool = False):
    """Write `weights` (layer -> Keras-layout arrays) into `group` as Keras 2 `save_weights`
    does, plus two layers without weights (`input_1`, `pool1`)."""
    names = [name.encode() for name in weights] + [b"input_1", b"pool1"]  # no-weight layers
    if split_layer_names:  # Keras 2 splits attributes larger than the HDF5 header limit
        half = len(names) // 2
        group.attrs["layer_names0"], group.attrs["layer_names1"] = names[:half], names[half:]
    else:
        group.attrs["layer_names"] = names
    group.attrs["backend"] = b"tensorflow"
    group.attrs["keras_version"] = b"2.2.4"
    for layer, arrays in weights.items():
        layer_group = group.create_group(layer)
        suffixes = ["gamma:0"] if len(arrays) == 1 else ["kernel:0", "bias:0"]
        weight_names = [f"{layer}/{suffix}" for suffix in suffixes]
        layer_group.attrs["weight_names"] = [n.encode() for n in weight_names]
        for weight_name, array in zip(weight_names, arrays, strict=True):
            layer_group.create_dataset(weight_name, data=array)
    for empty in ("input_1", "pool1"):
        group.create_group(empty).attrs["weight_names"] = np.array([], dtype="S1")


def write_keras2_h5(path, weights, **kwargs):
    """A Keras 2 weights-only HDF5 file at `path`; `kwargs` go to `write_keras2_weights`."""
    with h5py.File(path, "w") as file:
        write_keras2_weights(file, weights, **kwargs)


# --- the converted SSD300 forward (acceptance) ------------------------------------------------

CHECKED_LAYERS = ("conv1_1", "conv4_3", "conv4_3_norm", "conv4_3_norm_mbox_conf")


@pytest.fixture(scope="module", params=("caffe", "ssd_keras"))
def converted_activations(
    request, tmp_path_factory, ssd300_voc_config, random_caffe_blobs, keras_weights
):
    """The random weights written in one source's file format (a `.caffemodel`, or an
    ssd_keras Keras 2 HDF5 file), loaded into SSD300 VOC by its converter, and run on one
    random 300x300 image.

    Returns:
        (image (300, 300, 3) float32 RGB 0..255, layer name -> (C, H, W) activations of
        `CHECKED_LAYERS`).
    """
    source = request.param
    directory = tmp_path_factory.mktemp(source)
    model = build_model(ssd300_voc_config)
    if source == "caffe":
        path = directory / "VGG_VOC0712_SSD_300x300.caffemodel"
        write_caffemodel(path, random_caffe_blobs, net_name="VGG_VOC0712_SSD_300x300")
        load_caffe_weights(model, path)
        image_seed = 1
    else:
        path = directory / "VGG_VOC0712_SSD_300x300_iter_120000.h5"
        write_keras2_h5(path, keras_weights)
        load_ssd_keras_weights(model, path)
        image_seed = 2
    rng = np.random.default_rng(image_seed)
    image = rng.integers(0, 256, size=(300, 300, 3)).astype(np.float32)
    probe = keras.Model(model.input, [model.get_layer(n).output for n in CHECKED_LAYERS])
    outputs = [keras.ops.convert_to_numpy(o)[0].transpose(2, 0, 1) for o in probe(image[None])]
    return image, dict(zip(CHECKED_LAYERS, outputs, strict=True))


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
