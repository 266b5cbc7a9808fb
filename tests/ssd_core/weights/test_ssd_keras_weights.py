"""ssd_keras HDF5 conversion: the Keras 2 weight-file layout, errors (the forward pass against
NumPy is checked for every converter in `test_converted_forward.py`).

Test files are written with the conftest's h5py writers in the layout Keras 2 `save_weights`
produces.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from ssd_core import build_model
from ssd_core.weights import (
    WeightFileError,
    load_ssd_keras_weights,
    read_ssd_keras_h5,
)
from tests.ssd_core.weights.conftest import (
    VGG16_BASE_LAYERS,
    write_keras2_h5,
    write_keras2_weights,
)

# --- file layout ------------------------------------------------------------------------------


def test_reader_returns_weighted_layers_in_weight_names_order(tmp_path):
    kernel, bias = np.ones((3, 3, 3, 4), np.float32), np.arange(4.0, dtype=np.float32)
    write_keras2_h5(
        tmp_path / "w.h5", {"conv1_1": [kernel, bias], "conv4_3_norm": [np.full(4, 20.0)]}
    )
    read = read_ssd_keras_h5(tmp_path / "w.h5")
    assert list(read) == ["conv1_1", "conv4_3_norm"]  # input_1 / pool1 hold no weights
    assert [a.shape for a in read["conv1_1"]] == [(3, 3, 3, 4), (4,)]
    np.testing.assert_array_equal(read["conv1_1"][1], [0.0, 1.0, 2.0, 3.0])
    np.testing.assert_array_equal(read["conv4_3_norm"][0], np.full(4, 20.0))


def test_full_model_file_reads_the_model_weights_group(tmp_path):
    with h5py.File(tmp_path / "model.h5", "w") as file:
        file.attrs["model_config"] = b"{}"
        write_keras2_weights(
            file.create_group("model_weights"), {"fc7": [np.ones((1, 1, 2, 2))] * 2}
        )
    assert list(read_ssd_keras_h5(tmp_path / "model.h5")) == ["fc7"]


def test_split_layer_names_attribute_is_joined(tmp_path):
    weights = {f"conv1_{i}": [np.ones((1, 1, 1, 1)), np.ones(1)] for i in (1, 2, 3, 4)}
    write_keras2_h5(tmp_path / "w.h5", weights, split_layer_names=True)
    assert list(read_ssd_keras_h5(tmp_path / "w.h5")) == list(weights)


def test_file_without_layer_names_is_rejected(tmp_path):
    with h5py.File(tmp_path / "w.h5", "w") as file:
        file.create_dataset("x", data=np.zeros(3))
    with pytest.raises(WeightFileError, match="no 'layer_names' attribute"):
        read_ssd_keras_h5(tmp_path / "w.h5")


# --- errors -----------------------------------------------------------------------------------


def test_missing_layer_error_names_the_layer(tmp_path, ssd300_voc_config, keras_weights):
    weights = {k: v for k, v in keras_weights.items() if k != "conv9_2_mbox_loc"}
    write_keras2_h5(tmp_path / "w.h5", weights)
    model = build_model(ssd300_voc_config)
    with pytest.raises(WeightFileError, match=r"layer 'conv9_2_mbox_loc' is missing"):
        load_ssd_keras_weights(model, tmp_path / "w.h5")


def test_mis_shaped_layer_error_names_layer_and_both_shapes(
    tmp_path, ssd300_voc_config, keras_weights
):
    coco_head = [np.zeros((3, 3, 512, 324), np.float32), np.zeros(324, np.float32)]
    write_keras2_h5(tmp_path / "w.h5", {**keras_weights, "conv4_3_norm_mbox_conf": coco_head})
    model = build_model(ssd300_voc_config)
    with pytest.raises(WeightFileError) as error:
        load_ssd_keras_weights(model, tmp_path / "w.h5")
    message = str(error.value)
    assert "'conv4_3_norm_mbox_conf'" in message
    assert "expected shape (3, 3, 512, 84)" in message
    assert "found (3, 3, 512, 324)" in message


def test_base_only_loads_vgg_layers_and_keeps_the_rest(tmp_path, ssd300_voc_config, keras_weights):
    write_keras2_h5(tmp_path / "vgg.h5", {name: keras_weights[name] for name in VGG16_BASE_LAYERS})
    model = build_model(ssd300_voc_config)
    head_before = model.get_layer("fc7_mbox_conf").get_weights()[0].copy()
    load_ssd_keras_weights(model, tmp_path / "vgg.h5", base_only=True)
    np.testing.assert_array_equal(
        model.get_layer("conv5_3").get_weights()[0], keras_weights["conv5_3"][0]
    )
    np.testing.assert_array_equal(model.get_layer("fc7_mbox_conf").get_weights()[0], head_before)
