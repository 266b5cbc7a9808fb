"""Backbones as components: registry, derived geometry, explicit SSD300/SSD512 layouts."""

from __future__ import annotations

import pytest

from ssd_core import SSDConfig, build_model
from ssd_core.backbones import (
    BACKBONE_NAMES,
    base_layer_names,
    feature_map_sizes,
    get_backbone,
    layer_names,
)
from tests.ssd_core.weights.conftest import VGG16_BASE_LAYERS


@pytest.mark.parametrize(
    ("preset", "sizes"),
    [
        # SSD paper fig. 2 / the Caffe prototxts.
        ("ssd300_voc", (38, 19, 10, 5, 3, 1)),
        ("ssd512_voc", (64, 32, 16, 8, 4, 2, 1)),
        # The face detector: conv8_2 / conv9_2 are 3x3 stride 1 pad 1, so 5, 5, 5.
        ("ssd300_res10_face", (38, 19, 10, 5, 5, 5)),
    ],
)
def test_square_feature_map_sizes_of_the_published_models(preset, sizes):
    assert feature_map_sizes(SSDConfig.preset(preset)) == tuple((s, s) for s in sizes)


def test_res10_odd_size_follows_caffe_ceil_pooling():
    # 301 -> conv1 7x7/2 pad 3: 151 -> pool 3x3/2 ceil: ceil(148 / 2) + 1 = 75 (TF "same"
    # pooling would give 76) -> 38 -> 19.
    config = SSDConfig.preset("ssd300_res10_face", image_size=(301, 301))
    assert feature_map_sizes(config)[:2] == ((38, 38), (19, 19))
    model = build_model(config)
    assert tuple(model.get_layer("conv1_pool").output.shape[1:3]) == (75, 75)


def test_every_registered_backbone_builds_its_default_sources():
    presets = {"vgg16": "ssd300_voc", "res10": "ssd300_res10_face", "ssd7": "ssd7"}
    assert set(presets) == set(BACKBONE_NAMES)
    for name, preset in presets.items():
        backbone = get_backbone(name)
        config = SSDConfig.preset(preset)
        assert config.source_layers == backbone.layouts[backbone.layout(config)]
        assert len(feature_map_sizes(config)) == config.num_layers


def test_vgg16_base_layers_are_the_fc_reduced_vgg():
    assert base_layer_names(SSDConfig.preset("ssd300_voc")) == VGG16_BASE_LAYERS
    assert base_layer_names(SSDConfig.preset("ssd512_voc")) == VGG16_BASE_LAYERS


def test_res10_layer_names_are_the_caffe_names():
    names = layer_names(SSDConfig.preset("ssd300_res10_face"))
    assert names[:5] == ("data_bn", "data_scale", "conv1_h", "conv1_bn_h", "conv1_scale_h")
    assert "layer_512_1_conv_expand_h" in names and "layer_256_1_conv_expand" in names
    assert names[-1] in ("conv9_2_h", "conv4_3_norm")


def test_ssd512_sources_need_the_ssd512_layout():
    config = SSDConfig.preset("ssd512_voc").replace(extra_layers="ssd300")
    with pytest.raises(ValueError, match="needs source_layers"):
        build_model(config)


def test_unknown_extra_layers_are_refused_with_the_known_ones():
    config = SSDConfig.preset("ssd300_voc").replace(extra_layers="ssd600")
    with pytest.raises(ValueError, match=r"extra_layers \['ssd300', 'ssd512'\]"):
        feature_map_sizes(config)


def test_res10_face_model_has_the_parameter_count_of_the_caffemodel():
    # 2,662,666 values in res10_300x300_ssd_iter_140000.caffemodel, less the moving-average
    # factor of its 10 BatchNorm layers, which the conversion divides out.
    assert build_model(SSDConfig.preset("ssd300_res10_face")).count_params() == 2_662_656
