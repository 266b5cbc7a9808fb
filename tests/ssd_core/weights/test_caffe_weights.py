"""Caffe `.caffemodel` conversion: file format, layout, errors (the forward pass against NumPy
is checked for every converter in `test_converted_forward.py`)."""

from __future__ import annotations

import numpy as np
import pytest

from ssd_core import SSDConfig, build_model
from ssd_core.weights import (
    WeightFileError,
    load_caffe_weights,
    read_caffemodel,
    write_caffemodel,
)
from ssd_core.weights.caffe import caffe_to_keras, caffe_weights_for_model, keras_shape_to_caffe
from ssd_core.weights.caffe_pb2 import NetParameter
from tests.ssd_core.weights.conftest import VGG16_BASE_LAYERS

# --- file format ------------------------------------------------------------------------------


def test_caffemodel_round_trip_keeps_names_shapes_and_values(tmp_path):
    rng = np.random.default_rng(0)
    blobs = {
        "conv1_1": [rng.normal(size=(4, 3, 3, 3)).astype(np.float32), np.arange(4.0)],
        "conv4_3_norm": [np.full(5, 20.0)],
    }
    path = tmp_path / "net.caffemodel"
    write_caffemodel(path, blobs, net_name="tiny")
    read = read_caffemodel(path)
    assert list(read) == ["conv1_1", "conv4_3_norm"]
    np.testing.assert_array_equal(read["conv1_1"][0], blobs["conv1_1"][0])
    np.testing.assert_array_equal(read["conv1_1"][1], [0.0, 1.0, 2.0, 3.0])
    np.testing.assert_array_equal(read["conv4_3_norm"][0], np.full(5, 20.0))


def test_reader_decodes_hand_encoded_caffe_field_numbers(tmp_path):
    # NetParameter: layer (field 100) { name (1): "a", blobs (7) { shape (7) { dim (1): [2] },
    # data (5): packed [1.0, 2.0] } }, encoded by hand from the upstream caffe.proto numbers.
    blob = b"\x3a\x03\x0a\x01\x02" + b"\x2a\x08" + np.array([1.0, 2.0], "<f4").tobytes()
    layer = b"\x0a\x01a" + b"\x3a" + bytes([len(blob)]) + blob
    path = tmp_path / "net.caffemodel"
    path.write_bytes(b"\xa2\x06" + bytes([len(layer)]) + layer)
    read = read_caffemodel(path)
    assert list(read) == ["a"]
    assert read["a"][0].shape == (2,)
    assert read["a"][0].tolist() == [1.0, 2.0]


def test_reader_skips_fields_outside_the_minimal_proto(tmp_path):
    # A LayerParameter with bottom (3) and top (4) strings, which our proto does not declare.
    net = NetParameter()
    layer = net.layer.add(name="fc7", type="Convolution")
    layer.blobs.add().data.extend([3.0])
    layer.blobs[0].shape.dim.extend([1])
    extra = b"\x1a\x03fc6" + b"\x22\x03fc7"  # bottom: "fc6", top: "fc7"
    inner = layer.SerializeToString() + extra
    path = tmp_path / "net.caffemodel"
    path.write_bytes(b"\xa2\x06" + bytes([len(inner)]) + inner)  # field 100, length-delimited
    assert read_caffemodel(path)["fc7"][0].tolist() == [3.0]


def test_legacy_v1_layers_are_read_with_4d_shapes(tmp_path):
    path = tmp_path / "old.caffemodel"
    write_caffemodel(path, {"conv1_1": [np.ones((2, 3, 1, 1)), np.arange(2.0)]}, legacy=True)
    read = read_caffemodel(path)
    assert read["conv1_1"][0].shape == (2, 3, 1, 1)
    assert read["conv1_1"][1].shape == (1, 1, 1, 2)


def test_garbage_file_raises_weight_file_error(tmp_path):
    path = tmp_path / "bad.caffemodel"
    path.write_bytes(b"\xff\xff\xff\xff not a protobuf")
    with pytest.raises(WeightFileError, match="not a Caffe NetParameter"):
        read_caffemodel(path)


# --- layout -----------------------------------------------------------------------------------


def test_caffe_kernel_becomes_keras_kh_kw_in_out():
    kernel = np.arange(2 * 3 * 1 * 2, dtype=np.float32).reshape(2, 3, 1, 2)  # (out, in, kh, kw)
    converted = caffe_to_keras(kernel)
    assert converted.shape == (1, 2, 3, 2)
    # Caffe element [o=1, i=2, y=0, x=1] is flat index 1*6 + 2*2 + 0*2 + 1 = 11.
    assert converted[0, 1, 2, 1] == 11.0


def test_legacy_bias_shape_is_accepted(ssd300_voc_config, random_caffe_blobs):
    model = build_model(ssd300_voc_config)
    kernel, bias = random_caffe_blobs["conv1_1"]
    converted = caffe_weights_for_model(
        {"conv1_1": [kernel, bias.reshape(1, 1, 1, 64)]}, model, ["conv1_1"], "old.caffemodel"
    )
    np.testing.assert_array_equal(converted["conv1_1"][1], bias)


# --- errors -----------------------------------------------------------------------------------


def test_missing_layer_error_names_the_layer(ssd300_voc_config, random_caffe_blobs):
    model = build_model(ssd300_voc_config)
    blobs = {k: v for k, v in random_caffe_blobs.items() if k != "fc7_mbox_conf"}
    names = [layer.name for layer in model.layers if layer.weights]
    with pytest.raises(WeightFileError, match=r"layer 'fc7_mbox_conf' is missing"):
        caffe_weights_for_model(blobs, model, names, "ssd.caffemodel")


def test_mis_shaped_layer_error_names_layer_and_both_shapes(ssd300_voc_config, random_caffe_blobs):
    model = build_model(ssd300_voc_config)
    coco_head = [np.zeros((324, 512, 3, 3), np.float32), np.zeros(324, np.float32)]
    blobs = {**random_caffe_blobs, "conv4_3_norm_mbox_conf": coco_head}
    names = [layer.name for layer in model.layers if layer.weights]
    with pytest.raises(WeightFileError) as error:
        caffe_weights_for_model(blobs, model, names, "coco.caffemodel")
    message = str(error.value)
    assert "'conv4_3_norm_mbox_conf'" in message
    assert "expected shape (84, 512, 3, 3)" in message
    assert "found (324, 512, 3, 3)" in message


def test_load_from_incomplete_file_raises_and_leaves_model_unchanged(
    tmp_path, ssd300_voc_config, random_caffe_blobs
):
    path = tmp_path / "partial.caffemodel"
    write_caffemodel(path, {"conv1_1": random_caffe_blobs["conv1_1"]})
    model = build_model(ssd300_voc_config)
    before = model.get_layer("conv1_1").get_weights()[0].copy()
    with pytest.raises(WeightFileError, match=r"layer 'conv1_2' is missing"):
        load_caffe_weights(model, path)
    np.testing.assert_array_equal(model.get_layer("conv1_1").get_weights()[0], before)


def test_base_only_loads_vgg_layers_and_keeps_the_rest(
    tmp_path, ssd300_voc_config, random_caffe_blobs
):
    # The fc-reduced VGG-16 file: conv1_1 .. fc7 plus the classifier fc8 the model lacks.
    base = {name: random_caffe_blobs[name] for name in VGG16_BASE_LAYERS}
    base["fc8"] = [np.zeros((1000, 1024, 1, 1), np.float32), np.zeros(1000, np.float32)]
    path = tmp_path / "VGG_ILSVRC_16_layers_fc_reduced.caffemodel"
    write_caffemodel(path, base)
    model = build_model(ssd300_voc_config)
    conv6_1_before = model.get_layer("conv6_1").get_weights()[0].copy()
    load_caffe_weights(model, path, base_only=True)
    fc6_kernel = model.get_layer("fc6").get_weights()[0]
    np.testing.assert_array_equal(fc6_kernel, base["fc6"][0].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(model.get_layer("conv6_1").get_weights()[0], conv6_1_before)
    np.testing.assert_array_equal(model.get_layer("conv4_3_norm").get_weights()[0], 20.0)


# --- BatchNorm / Scale (the ResNet-10 face detector) --------------------------------------------


def _res10_blobs(rng: np.random.Generator, factor: float) -> dict[str, list[np.ndarray]]:
    """Random Caffe blobs for every weighted layer of the res10 face model; every BatchNorm
    stores its running sums scaled by `factor`, as Caffe does."""
    model = build_model(SSDConfig.preset("ssd300_res10_face"))
    blobs = {}
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.__class__.__name__ == "BatchNormalization":
            channels = layer.weights[0].shape[0]
            mean = rng.normal(size=channels).astype(np.float32)
            variance = rng.uniform(0.5, 2.0, size=channels).astype(np.float32)
            blobs[layer.name] = [mean * factor, variance * factor, np.array([factor], np.float32)]
        else:
            blobs[layer.name] = [
                rng.normal(size=keras_shape_to_caffe(w.shape)).astype(np.float32)
                for w in layer.weights
            ]
    return blobs


def test_batch_norm_blobs_are_divided_by_the_moving_average_factor(tmp_path):
    blobs = _res10_blobs(np.random.default_rng(5), factor=999.98236)
    path = tmp_path / "res10.caffemodel"
    write_caffemodel(path, blobs)
    model = build_model(SSDConfig.preset("ssd300_res10_face"))
    load_caffe_weights(model, path)
    mean, variance = model.get_layer("layer_256_1_bn1").get_weights()
    sum_mean, sum_variance, factor = blobs["layer_256_1_bn1"]
    np.testing.assert_allclose(mean, sum_mean / factor[0], rtol=1e-6)
    np.testing.assert_allclose(variance, sum_variance / factor[0], rtol=1e-6)
    gamma, beta = model.get_layer("layer_256_1_scale1").get_weights()
    np.testing.assert_array_equal(gamma, blobs["layer_256_1_scale1"][0])
    np.testing.assert_array_equal(beta, blobs["layer_256_1_scale1"][1])
    assert model.get_layer("data_bn").epsilon == 1e-5  # Caffe's BatchNorm default


def test_batch_norm_with_a_zero_factor_gives_zero_statistics(tmp_path):
    blobs = _res10_blobs(np.random.default_rng(6), factor=0.0)
    path = tmp_path / "res10.caffemodel"
    write_caffemodel(path, blobs)
    model = build_model(SSDConfig.preset("ssd300_res10_face"))
    load_caffe_weights(model, path)
    np.testing.assert_array_equal(model.get_layer("data_bn").get_weights()[0], 0.0)


def test_batch_norm_without_its_factor_blob_is_refused_by_name(tmp_path):
    blobs = _res10_blobs(np.random.default_rng(7), factor=1.0)
    blobs["conv1_bn_h"] = blobs["conv1_bn_h"][:2]
    path = tmp_path / "res10.caffemodel"
    write_caffemodel(path, blobs)
    model = build_model(SSDConfig.preset("ssd300_res10_face"))
    with pytest.raises(WeightFileError, match=r"'conv1_bn_h': expected 3 weight arrays, found 2"):
        load_caffe_weights(model, path)


def test_scale_of_another_channel_count_is_refused_with_both_shapes(tmp_path):
    blobs = _res10_blobs(np.random.default_rng(8), factor=1.0)
    blobs["data_scale"] = [np.ones(4, np.float32), np.zeros(4, np.float32)]
    path = tmp_path / "res10.caffemodel"
    write_caffemodel(path, blobs)
    model = build_model(SSDConfig.preset("ssd300_res10_face"))
    with pytest.raises(WeightFileError, match=r"'data_scale' weight 0: expected shape \(3,\)"):
        load_caffe_weights(model, path)
