"""The VGG-16 SSD deploy nets of tests/data/caffe run in OpenCV 4's cv2.dnn (so they are valid
Caffe nets) and agree with our VGG SSD300 and our anchors. The published VGG weights cannot be
installed here, so SSD300 runs on random weights written as a .caffemodel."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from ssd_core import SSDConfig, build_model, generate_anchors
from ssd_core.weights import load_caffe_weights, write_caffemodel
from ssd_core.weights.caffe import keras_shape_to_caffe

DATA = Path(__file__).resolve().parents[2] / "data" / "caffe"
CAFFE_MEAN_BGR = (104.0, 117.0, 123.0)


def _random_blobs(model, rng: np.random.Generator) -> dict[str, list[np.ndarray]]:
    """He-scaled random kernels, small biases, conv4_3_norm scale 20, in Caffe layout."""
    blobs = {}
    for layer in model.layers:
        if not layer.weights:
            continue
        arrays = []
        for weight in layer.weights:
            shape = keras_shape_to_caffe(weight.shape)
            if len(shape) == 4:
                std = np.float32(np.sqrt(2.0 / np.prod(shape[1:])))
                arrays.append(rng.standard_normal(shape, dtype=np.float32) * std)
            elif layer.name == "conv4_3_norm":
                arrays.append(np.full(shape, 20.0, np.float32))
            else:
                arrays.append(rng.normal(0.0, 0.1, shape).astype(np.float32))
        blobs[layer.name] = arrays
    return blobs


def _relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    return float(np.abs(ours - reference).max() / np.abs(reference).max())


@pytest.fixture(scope="module")
def ssd300_both(tmp_path_factory):
    """(our converted SSD300 VOC outputs, cv2.dnn outputs) on one random image."""
    config = SSDConfig.preset("ssd300_voc")
    model = build_model(config)
    rng = np.random.default_rng(3)
    path = tmp_path_factory.mktemp("vgg") / "random_ssd300.caffemodel"
    write_caffemodel(path, _random_blobs(model, rng))
    load_caffe_weights(model, path)
    net = cv2.dnn.readNetFromCaffe(str(DATA / "VGG_VOC0712_SSD_300x300_deploy.prototxt"), str(path))
    image = rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)
    bgr = np.ascontiguousarray(image[..., ::-1])
    net.setInput(cv2.dnn.blobFromImage(bgr, 1.0, (300, 300), CAFFE_MEAN_BGR, swapRB=False))
    loc, conf, priors = net.forward(["mbox_loc", "mbox_conf", "mbox_priorbox"])
    ours = model(image[None])
    return (
        {key: np.asarray(value)[0] for key, value in ours.items()},
        {"loc": loc.reshape(-1, 4), "conf": conf.reshape(-1, 21), "anchors": priors[0, 0]},
    )


def test_vgg_ssd300_priorboxes_equal_our_anchors(ssd300_both):
    _, reference = ssd300_both
    anchors = generate_anchors(SSDConfig.preset("ssd300_voc"))
    np.testing.assert_allclose(anchors, reference["anchors"].reshape(-1, 4), atol=1e-5)


def test_vgg_ssd300_raw_outputs_equal_opencv_on_random_weights(ssd300_both):
    ours, reference = ssd300_both
    assert _relative_error(ours["bbox_regression"], reference["loc"]) < 1e-4
    assert _relative_error(ours["cls_logits"], reference["conf"]) < 1e-4


def _priorbox_net(prototxt: Path, feature_sizes: dict[str, int], image_size: int) -> str:
    """Only the PriorBox layers of `prototxt` and their concatenation, fed by input blobs of
    the published feature-map sizes: a net that needs no weights."""
    text = prototxt.read_text()
    blocks = re.findall(
        r"layer \{\n(?:  .*\n)*?  type: \"PriorBox\"\n(?:  .*\n|    .*\n)*?\}\n", text
    )
    inputs = [("data", 3, image_size)] + [(name, 1, size) for name, size in feature_sizes.items()]
    header = "".join(
        f'input: "{name}"\ninput_shape {{ dim: 1 dim: {c} dim: {s} dim: {s} }}\n'
        for name, c, s in inputs
    )
    bottoms = "".join(f'  bottom: "{name}_mbox_priorbox"\n' for name in feature_sizes)
    concat = f'layer {{\n  name: "mbox_priorbox"\n  type: "Concat"\n{bottoms}'
    concat += '  top: "mbox_priorbox"\n  concat_param { axis: 2 }\n}\n'
    return header + "".join(blocks) + concat


def test_ssd512_priorboxes_equal_our_anchors_up_to_caffes_integer_sizes(tmp_path):
    sources = SSDConfig.preset("ssd512_voc").source_layers
    sizes = dict(zip(sources, (64, 32, 16, 8, 4, 2, 1), strict=True))
    prototxt = tmp_path / "priors.prototxt"
    prototxt.write_text(_priorbox_net(DATA / "VGG_VOC0712_SSD_512x512_deploy.prototxt", sizes, 512))
    net = cv2.dnn.readNetFromCaffe(str(prototxt))
    net.setInput(np.zeros((1, 3, 512, 512), np.float32), "data")
    for name, size in sizes.items():
        net.setInput(np.zeros((1, 1, size, size), np.float32), name)
    opencv = net.forward("mbox_priorbox")[0, 0].reshape(-1, 4)
    # OpenCV's PriorBox keeps min_size 35.84 as a float; Caffe's casts it to int
    # (`int min_size_ = min_sizes_[s];`), and the released SSD512 weights were trained so.
    exact = SSDConfig.preset("ssd512_voc", integer_anchor_sizes=False)
    np.testing.assert_allclose(generate_anchors(exact), opencv, atol=1e-5)
    caffe = generate_anchors(SSDConfig.preset("ssd512_voc"))
    assert caffe.shape == opencv.shape and np.abs(caffe - opencv).max() > 1e-4
