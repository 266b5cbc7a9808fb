"""ssd_keras HDF5 conversion: the Keras 2 weight-file layout, forward pass against NumPy, errors.

Test files are written here with h5py in the layout Keras 2 `save_weights` produces: root
attribute `layer_names`, one group per layer with attribute `weight_names`, datasets at
`<layer>/<layer>/kernel:0`.
"""

from __future__ import annotations

import h5py
import keras
import numpy as np
import pytest

from ssd_core import build_model
from ssd_core.weights import (
    VGG16_BASE_LAYERS,
    WeightFileError,
    load_ssd_keras_weights,
    read_ssd_keras_h5,
)

CHECKED_LAYERS = ("conv1_1", "conv4_3", "conv4_3_norm", "conv4_3_norm_mbox_conf")


def _to_keras_layout(arrays):
    """Caffe (out, in, kh, kw) kernels -> Keras 2 (kh, kw, in, out); vectors unchanged."""
    return [a.transpose(2, 3, 1, 0) if a.ndim == 4 else a for a in arrays]


def _write_keras2_weights(group: h5py.Group, weights: dict, split_layer_names: bool = False):
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


def _write_h5(path, weights, **kwargs):
    with h5py.File(path, "w") as file:
        _write_keras2_weights(file, weights, **kwargs)


@pytest.fixture(scope="module")
def keras_weights(random_caffe_blobs):
    return {name: _to_keras_layout(arrays) for name, arrays in random_caffe_blobs.items()}


# --- file layout ------------------------------------------------------------------------------


def test_reader_returns_weighted_layers_in_weight_names_order(tmp_path):
    kernel, bias = np.ones((3, 3, 3, 4), np.float32), np.arange(4.0, dtype=np.float32)
    _write_h5(tmp_path / "w.h5", {"conv1_1": [kernel, bias], "conv4_3_norm": [np.full(4, 20.0)]})
    read = read_ssd_keras_h5(tmp_path / "w.h5")
    assert list(read) == ["conv1_1", "conv4_3_norm"]  # input_1 / pool1 hold no weights
    assert [a.shape for a in read["conv1_1"]] == [(3, 3, 3, 4), (4,)]
    np.testing.assert_array_equal(read["conv1_1"][1], [0.0, 1.0, 2.0, 3.0])
    np.testing.assert_array_equal(read["conv4_3_norm"][0], np.full(4, 20.0))


def test_full_model_file_reads_the_model_weights_group(tmp_path):
    with h5py.File(tmp_path / "model.h5", "w") as file:
        file.attrs["model_config"] = b"{}"
        _write_keras2_weights(
            file.create_group("model_weights"), {"fc7": [np.ones((1, 1, 2, 2))] * 2}
        )
    assert list(read_ssd_keras_h5(tmp_path / "model.h5")) == ["fc7"]


def test_split_layer_names_attribute_is_joined(tmp_path):
    weights = {f"conv1_{i}": [np.ones((1, 1, 1, 1)), np.ones(1)] for i in (1, 2, 3, 4)}
    _write_h5(tmp_path / "w.h5", weights, split_layer_names=True)
    assert list(read_ssd_keras_h5(tmp_path / "w.h5")) == list(weights)


def test_file_without_layer_names_is_rejected(tmp_path):
    with h5py.File(tmp_path / "w.h5", "w") as file:
        file.create_dataset("x", data=np.zeros(3))
    with pytest.raises(WeightFileError, match="no 'layer_names' attribute"):
        read_ssd_keras_h5(tmp_path / "w.h5")


# --- forward pass against NumPy (acceptance) -------------------------------------------------


@pytest.fixture(scope="module")
def converted_activations(tmp_path_factory, ssd300_voc_config, keras_weights):
    path = tmp_path_factory.mktemp("ssd_keras") / "VGG_VOC0712_SSD_300x300_iter_120000.h5"
    _write_h5(path, keras_weights)
    model = build_model(ssd300_voc_config)
    load_ssd_keras_weights(model, path)
    image = np.random.default_rng(2).integers(0, 256, size=(300, 300, 3)).astype(np.float32)
    probe = keras.Model(model.input, [model.get_layer(n).output for n in CHECKED_LAYERS])
    outputs = [keras.ops.convert_to_numpy(o)[0].transpose(2, 0, 1) for o in probe(image[None])]
    return image, dict(zip(CHECKED_LAYERS, outputs, strict=True))


def test_ssd_keras_conv1_1_matches_numpy_on_bgr_mean_subtracted_input(
    converted_activations, random_caffe_blobs, numpy_caffe, close_relative
):
    image, activations = converted_activations
    weight, bias = random_caffe_blobs["conv1_1"]
    expected = numpy_caffe.relu(
        numpy_caffe.conv2d(numpy_caffe.caffe_input(image), weight, bias, pad=1)
    )
    close_relative(activations["conv1_1"], expected)


def test_ssd_keras_conv4_3_norm_matches_numpy_l2_norm_and_scale(
    converted_activations, random_caffe_blobs, numpy_caffe, close_relative
):
    _, activations = converted_activations
    (scale,) = random_caffe_blobs["conv4_3_norm"]
    close_relative(
        activations["conv4_3_norm"], numpy_caffe.l2_normalise(activations["conv4_3"], scale)
    )


def test_ssd_keras_conv4_3_norm_mbox_conf_matches_numpy_head(
    converted_activations, random_caffe_blobs, numpy_caffe, close_relative
):
    _, activations = converted_activations
    weight, bias = random_caffe_blobs["conv4_3_norm_mbox_conf"]
    expected = numpy_caffe.conv2d(activations["conv4_3_norm"], weight, bias, pad=1)
    close_relative(activations["conv4_3_norm_mbox_conf"], expected)


# --- errors -----------------------------------------------------------------------------------


def test_missing_layer_error_names_the_layer(tmp_path, ssd300_voc_config, keras_weights):
    weights = {k: v for k, v in keras_weights.items() if k != "conv9_2_mbox_loc"}
    _write_h5(tmp_path / "w.h5", weights)
    model = build_model(ssd300_voc_config)
    with pytest.raises(WeightFileError, match=r"layer 'conv9_2_mbox_loc' is missing"):
        load_ssd_keras_weights(model, tmp_path / "w.h5")


def test_mis_shaped_layer_error_names_layer_and_both_shapes(
    tmp_path, ssd300_voc_config, keras_weights
):
    coco_head = [np.zeros((3, 3, 512, 324), np.float32), np.zeros(324, np.float32)]
    _write_h5(tmp_path / "w.h5", {**keras_weights, "conv4_3_norm_mbox_conf": coco_head})
    model = build_model(ssd300_voc_config)
    with pytest.raises(WeightFileError) as error:
        load_ssd_keras_weights(model, tmp_path / "w.h5")
    message = str(error.value)
    assert "'conv4_3_norm_mbox_conf'" in message
    assert "expected shape (3, 3, 512, 84)" in message
    assert "found (3, 3, 512, 324)" in message


def test_base_only_loads_vgg_layers_and_keeps_the_rest(tmp_path, ssd300_voc_config, keras_weights):
    _write_h5(tmp_path / "vgg.h5", {name: keras_weights[name] for name in VGG16_BASE_LAYERS})
    model = build_model(ssd300_voc_config)
    head_before = model.get_layer("fc7_mbox_conf").get_weights()[0].copy()
    load_ssd_keras_weights(model, tmp_path / "vgg.h5", base_only=True)
    np.testing.assert_array_equal(
        model.get_layer("conv5_3").get_weights()[0], keras_weights["conv5_3"][0]
    )
    np.testing.assert_array_equal(model.get_layer("fc7_mbox_conf").get_weights()[0], head_before)
