"""Class sub-sampling: kept classes' raw logits are the original ones, anchor by anchor."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from ssd_core import DecoderConfig, SSDConfig, build_model
from ssd_core.weights import subsample_classes
from ssd_core.weights.subsample import conf_channel_indices, kept_labels


@pytest.fixture(scope="module")
def ssd7_model():
    """SSD7 (classes circle, square, triangle, star, ring) with random non-zero conf biases."""
    keras.utils.set_random_seed(3)
    model = build_model(SSDConfig.preset("ssd7"))
    rng = np.random.default_rng(3)
    for source in model.ssd_config.source_layers:
        layer = model.get_layer(f"{source}_mbox_conf")
        kernel, bias = layer.get_weights()
        layer.set_weights([kernel, rng.normal(size=bias.shape).astype(np.float32)])
    return model


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(4).integers(0, 256, size=(2, 300, 480, 3)).astype(np.float32)


def test_conf_channel_indices_follow_box_major_caffe_layout():
    # 2 boxes, 3 classes, keep labels 0 and 2: box 0 -> channels 0, 2; box 1 -> 3, 5.
    assert conf_channel_indices([0, 2], boxes=2, num_classes=3).tolist() == [0, 2, 3, 5]


def test_kept_labels_put_background_first_then_the_given_order():
    config = SSDConfig.preset("ssd300_voc")
    assert kept_labels(config, ["person", "car"]) == [0, 15, 7]


def test_subsampled_logits_equal_original_logits_of_kept_classes(ssd7_model, images):
    small = subsample_classes(ssd7_model, ["star", "circle"])  # labels 4 and 1
    original = keras.ops.convert_to_numpy(ssd7_model(images)["cls_logits"])
    subsampled = keras.ops.convert_to_numpy(small(images)["cls_logits"])
    assert subsampled.shape == (*original.shape[:2], 3)
    np.testing.assert_allclose(subsampled, original[..., [0, 4, 1]], rtol=1e-5, atol=1e-5)


def test_subsampled_box_regression_is_unchanged(ssd7_model, images):
    small = subsample_classes(ssd7_model, ["ring"])
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(small(images)["bbox_regression"]),
        keras.ops.convert_to_numpy(ssd7_model(images)["bbox_regression"]),
        rtol=1e-5,
        atol=1e-5,
    )


def test_subsampled_config_has_new_classes_and_count(ssd7_model):
    config = subsample_classes(ssd7_model, ["star", "circle"]).ssd_config
    assert config.num_classes == 3
    assert config.class_names == ("star", "circle")
    assert config.label_names == ("background", "star", "circle")


def test_subsampled_inference_model_keeps_mode_and_decoder_options():
    model = build_model(SSDConfig.preset("ssd7"), "inference", DecoderConfig(max_detections=17))
    small = subsample_classes(model, ["square"])
    assert small.mode == "inference"
    assert small.decoder_config.max_detections == 17


def test_subsampled_model_survives_keras_save_and_load(ssd7_model, images, tmp_path):
    small = subsample_classes(ssd7_model, ["triangle", "square"])
    small.save(tmp_path / "small.keras")
    loaded = keras.saving.load_model(tmp_path / "small.keras")
    assert loaded.ssd_config.class_names == ("triangle", "square")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(images)["cls_logits"]),
        keras.ops.convert_to_numpy(small(images)["cls_logits"]),
        rtol=1e-6,
        atol=1e-6,
    )


@pytest.mark.parametrize(
    ("keep", "message"),
    [
        (["car"], r"classes \['car'\] are not in model 'ssd7'"),
        (["star", "star"], r"more than once: \['star'\]"),
        ([], "at least one class"),
        (["background", "star"], "background is always kept"),
        ("star", "sequence of class names"),
    ],
)
def test_invalid_keep_lists_are_rejected(ssd7_model, keep, message):
    with pytest.raises(ValueError, match=message):
        subsample_classes(ssd7_model, keep)
