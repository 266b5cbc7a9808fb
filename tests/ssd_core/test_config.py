"""SSDConfig: JSON round-trips, presets, errors that name the bad field."""

from __future__ import annotations

import json

import pytest

from ssd_core.config import SSDConfig
from ssd_core.presets import PRESETS


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_survives_a_json_round_trip(name):
    config = SSDConfig.preset(name)
    assert SSDConfig.from_json(config.to_json()) == config


def _custom_config() -> SSDConfig:
    return SSDConfig(
        name="custom",
        backbone="ssd7",
        image_size=(120, 160),
        num_classes=3,
        class_names=("cat", "dog"),
        source_layers=("conv4", "conv5"),
        scales=(0.2, 0.5, 0.9),
        aspect_ratios=((1.0, 2.0), (1.0, 3.0, 1.0 / 3.0)),
        two_boxes_for_ar1=False,
        steps=(16.0, None),
        offsets=0.25,
        clip=True,
        variances=(0.1, 0.1, 0.3, 0.3),
        integer_anchor_sizes=True,
        pixel_mean=(1.0, 2.0, 3.0),
        pixel_std=(4.0, 5.0, 6.0),
        channel_order="bgr",
        extra={"trained_on": "pets"},
    )


def test_non_default_config_survives_a_json_round_trip():
    config = _custom_config()
    loaded = SSDConfig.from_json(config.to_json())
    assert loaded == config
    assert loaded.extra == {"trained_on": "pets"}  # `extra` is excluded from ==


def test_non_default_config_survives_save_and_load(tmp_path):
    path = tmp_path / "config.json"
    _custom_config().save(path)
    assert SSDConfig.load(path) == _custom_config()


def test_json_lists_come_back_as_tuples():
    loaded = SSDConfig.from_json(_custom_config().to_json())
    assert loaded.image_size == (120, 160)
    assert loaded.aspect_ratios[1] == (1.0, 3.0, 1.0 / 3.0)
    assert loaded.steps == (16.0, None)


def test_boxes_per_location_counts_the_extra_ratio_1_box():
    assert SSDConfig.preset("ssd300_voc").boxes_per_location == (4, 6, 6, 6, 4, 4)
    assert _custom_config().boxes_per_location == (2, 3)


def test_label_names_put_background_at_label_0():
    names = SSDConfig.preset("ssd300_voc").label_names
    assert (names[0], names[1], names[15], len(names)) == ("background", "aeroplane", "person", 21)


def test_from_dict_names_an_unknown_field():
    data = {**SSDConfig.preset("ssd7").to_dict(), "anchor_scales": [1, 2]}
    with pytest.raises(ValueError, match="unknown SSDConfig field.*anchor_scales"):
        SSDConfig.from_dict(data)


def test_from_dict_names_a_missing_field():
    data = SSDConfig.preset("ssd7").to_dict()
    del data["scales"]
    with pytest.raises(ValueError, match=r"missing required field.*'scales'"):
        SSDConfig.from_dict(data)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("scales", [0.1, 0.2], "scales needs 5 values"),
        ("class_names", ["a"], "class_names must name the 5 foreground classes"),
        ("aspect_ratios", [[2.0, 1.0]] * 4, r"aspect_ratios\[0\] must start with 1.0"),
        ("channel_order", "brg", "channel_order must be one of"),
        ("backbone", "resnet", "backbone must be one of"),
        ("variances", [0.1, 0.1, 0.2], "variances must be 4 positive values"),
    ],
)
def test_from_dict_error_names_the_invalid_field(field, value, message):
    data = {**SSDConfig.preset("ssd7").to_dict(), field: value}
    with pytest.raises(ValueError, match=message):
        SSDConfig.from_dict(data)


def test_from_json_rejects_a_non_object():
    with pytest.raises(ValueError, match="must be an object, got list"):
        SSDConfig.from_json(json.dumps([1, 2]))


def test_unknown_preset_lists_the_available_ones():
    with pytest.raises(ValueError, match="unknown preset 'ssd600'.*ssd300_voc"):
        SSDConfig.preset("ssd600")
