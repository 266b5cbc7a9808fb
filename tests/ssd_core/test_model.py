"""The SSD network: sizes, parameter counts, head layout, serialisation, inference mode."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from ssd_core import fields
from ssd_core.anchors import generate_anchors
from ssd_core.backbones import feature_map_sizes
from ssd_core.config import SSDConfig
from ssd_core.decoder_config import DecoderConfig
from ssd_core.heads import build_heads
from ssd_core.model import SSD, build_model, to_inference
from ssd_core.postprocess import DetectionDecoder

REPO_ROOT = Path(__file__).resolve().parents[2]
PRESETS = ("ssd300_voc", "ssd300_coco", "ssd512_voc", "ssd512_coco", "ssd7")

# A small SSD7 for real forward passes: feature maps 8x12, 4x6, 2x3, 1x1 (A = 4 boxes each).
TINY_SSD7 = SSDConfig.preset("ssd7", image_size=(64, 96))


@pytest.fixture(scope="module")
def ssd300() -> SSD:
    return build_model(SSDConfig.preset("ssd300_voc"))


@pytest.fixture(scope="module")
def ssd512() -> SSD:
    return build_model(SSDConfig.preset("ssd512_voc"))


@pytest.fixture(scope="module")
def tiny_ssd7() -> SSD:
    keras.utils.set_random_seed(0)
    return build_model(TINY_SSD7)


def _images(config: SSDConfig, batch: int, seed: int = 0) -> np.ndarray:
    height, width = config.image_size
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(batch, height, width, 3)).astype(np.uint8)


# Parameter counts of the published Caffe models (VGG_VOC0712_SSD_300x300 / _512x512).


def test_ssd300_voc_has_the_caffe_parameter_count(ssd300):
    assert ssd300.count_params() == 26_285_486


def test_ssd512_voc_has_the_caffe_parameter_count(ssd512):
    assert ssd512.count_params() == 27_188_676


@pytest.mark.parametrize("preset", PRESETS)
def test_built_feature_maps_match_feature_map_sizes(preset):
    config = SSDConfig.preset(preset)
    model = build_model(config)
    built = [tuple(model.get_layer(name).output.shape[1:3]) for name in config.source_layers]
    assert built == list(feature_map_sizes(config))


@pytest.mark.parametrize(
    ("preset", "image_size"),
    [("ssd300_voc", (333, 517)), ("ssd512_voc", (555, 421)), ("ssd7", (101, 203))],
)
def test_feature_maps_match_feature_map_sizes_at_odd_non_square_sizes(preset, image_size):
    # Odd sizes exercise Caffe's ceil-mode pooling (VGG) and floor pooling (SSD7).
    config = SSDConfig.preset(preset, image_size=image_size)
    model = build_model(config)
    built = [tuple(model.get_layer(name).output.shape[1:3]) for name in config.source_layers]
    assert built == list(feature_map_sizes(config))


def test_ssd300_training_outputs_have_one_row_per_anchor(ssd300):
    shapes = {key: tuple(tensor.shape) for key, tensor in ssd300.output.items()}
    assert shapes == {"cls_logits": (None, 8732, 21), "bbox_regression": (None, 8732, 4)}


def test_ssd512_training_outputs_have_one_row_per_anchor(ssd512):
    assert tuple(ssd512.output["bbox_regression"].shape) == (None, 24564, 4)


def test_ssd300_has_caffe_layer_names_and_kernel_shapes(ssd300):
    # (kh, kw, in, out) of Caffe's (out, in, kh, kw) blobs in VGG_VOC0712_SSD_300x300.
    expected = {
        "conv1_1": (3, 3, 3, 64),
        "conv5_3": (3, 3, 512, 512),
        "fc6": (3, 3, 512, 1024),
        "fc7": (1, 1, 1024, 1024),
        "conv6_2": (3, 3, 256, 512),
        "conv9_2": (3, 3, 128, 256),
        "conv4_3_norm_mbox_loc": (3, 3, 512, 16),
        "conv4_3_norm_mbox_conf": (3, 3, 512, 84),
        "fc7_mbox_conf": (3, 3, 1024, 126),
        "conv9_2_mbox_loc": (3, 3, 256, 16),
    }
    got = {name: tuple(ssd300.get_layer(name).kernel.shape) for name in expected}
    assert got == expected
    assert tuple(ssd300.get_layer("conv4_3_norm").scale.shape) == (512,)
    assert ssd300.get_layer("fc6").dilation_rate == (6, 6)


def test_ssd512_has_conv10_2_with_a_4x4_kernel(ssd512):
    assert tuple(ssd512.get_layer("conv10_2").kernel.shape) == (4, 4, 128, 256)


def _caffe_conv_relu(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, stride: int, pad: int):
    """Caffe Convolution + ReLU in NumPy: `pad` zeros on every side. x (H, W, Cin)."""
    padded = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
    k = kernel.shape[0]
    out_h = (padded.shape[0] - k) // stride + 1
    out_w = (padded.shape[1] - k) // stride + 1
    out = np.empty((out_h, out_w, kernel.shape[3]))
    for i in range(out_h):
        for j in range(out_w):
            patch = padded[i * stride : i * stride + k, j * stride : j * stride + k]
            out[i, j] = np.einsum("hwc,hwco->o", patch, kernel) + bias
    return np.maximum(out, 0.0)


@pytest.mark.parametrize(
    ("model_name", "layer", "size", "stride", "pad"),
    [
        ("ssd300", "conv7_2", 10, 2, 1),  # even input: TF "same" would pad bottom/right only
        ("ssd512", "conv10_2", 2, 1, 1),  # 4x4 kernel, pad 1
    ],
)
def test_padded_convolutions_match_caffe(request, model_name, layer, size, stride, pad):
    model = request.getfixturevalue(model_name)
    conv = model.get_layer(layer)
    kernel, bias = (w.numpy() for w in conv.weights)
    rng = np.random.default_rng(4)
    x = rng.normal(size=(size, size, kernel.shape[2])).astype(np.float32)
    saved_bias, bias = bias, rng.normal(size=bias.shape).astype(np.float32)
    conv.bias.assign(bias)
    try:
        got = conv(model.get_layer(f"{layer}_pad")(x[None])).numpy()[0]
    finally:
        conv.bias.assign(saved_bias)
    expected = _caffe_conv_relu(x, kernel, bias, stride, pad)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_conv4_3_norm_scale_starts_at_20(ssd300):
    np.testing.assert_array_equal(ssd300.get_layer("conv4_3_norm").scale.numpy(), 20.0)


def test_vgg16_rejects_source_layers_it_does_not_produce():
    config = SSDConfig.preset("ssd300_voc").replace(
        source_layers=("conv4_3", "fc7", "conv6_2", "conv7_2", "conv8_2", "conv9_2")
    )
    with pytest.raises(ValueError, match="needs source_layers"):
        build_model(config)


def test_build_model_rejects_unknown_mode():
    with pytest.raises(ValueError, match="mode must be one of"):
        build_model(TINY_SSD7, mode="train")


@pytest.mark.parametrize(
    ("option", "message"),
    [({"method": "nms"}, "method must be one of"), ({"iou_threshold": 1.5}, "iou_threshold")],
)
def test_invalid_decoder_config_is_refused_in_training_mode_too(option, message):
    with pytest.raises(ValueError, match=message):
        SSD(TINY_SSD7, decoder_config=option)


def test_tiny_ssd7_forward_gives_one_row_per_anchor(tiny_ssd7):
    outputs = tiny_ssd7(_images(TINY_SSD7, 2))
    n_anchors = len(generate_anchors(TINY_SSD7))
    assert n_anchors == (8 * 12 + 4 * 6 + 2 * 3 + 1) * 4
    assert tuple(outputs["cls_logits"].shape) == (2, n_anchors, 6)
    assert tuple(outputs["bbox_regression"].shape) == (2, n_anchors, 4)


def test_model_accepts_uint8_and_float_images_alike(tiny_ssd7):
    images = _images(TINY_SSD7, 1)
    from_uint8 = tiny_ssd7(images)["cls_logits"].numpy()
    from_float = tiny_ssd7(images.astype(np.float32))["cls_logits"].numpy()
    np.testing.assert_allclose(from_uint8, from_float, rtol=1e-6, atol=1e-6)


# Head layout: output row i must be anchor i of generate_anchors.


def _layer_offsets(config: SSDConfig) -> list[int]:
    counts = [
        h * w * a
        for (h, w), a in zip(feature_map_sizes(config), config.boxes_per_location, strict=True)
    ]
    return [int(v) for v in np.cumsum([0, *counts])]


@pytest.mark.parametrize(
    ("head", "layer", "channel", "values"),
    [
        ("conv5_mbox_loc", 1, 2 * 4 + 3, 4),  # box 2, coordinate 3
        ("conv6_mbox_conf", 2, 3 * 6 + 4, 6),  # box 3, class 4
    ],
)
def test_head_bias_moves_the_rows_of_its_layer_and_box(tiny_ssd7, head, layer, channel, values):
    images = _images(TINY_SSD7, 1, seed=3)
    key = "bbox_regression" if values == 4 else "cls_logits"
    conv = tiny_ssd7.get_layer(head)
    saved = conv.get_weights()
    try:
        before = tiny_ssd7(images)[key].numpy()[0]
        kernel, bias = np.zeros_like(saved[0]), np.zeros_like(saved[1])
        bias[channel] = 1.0
        conv.set_weights([kernel, bias])
        after = tiny_ssd7(images)[key].numpy()[0]
    finally:
        conv.set_weights(saved)
    boxes = TINY_SSD7.boxes_per_location[layer]
    box, value = divmod(channel, values)
    offsets = _layer_offsets(TINY_SSD7)
    start, stop = offsets[layer], offsets[layer + 1]
    # Inside the layer: 1 at (every cell's row for `box`, `value`), 0 elsewhere.
    expected = np.zeros((stop - start, values), np.float32)
    expected[box::boxes, value] = 1.0
    np.testing.assert_allclose(after[start:stop], expected, atol=1e-6)
    # Outside the layer nothing moves.
    np.testing.assert_array_equal(
        np.delete(after, np.s_[start:stop], axis=0), np.delete(before, np.s_[start:stop], axis=0)
    )


def _one_hot_heads_output(
    config: SSDConfig, layer: int, row: int, col: int, head: str, channel: int
):
    """Heads of `config` over 1-channel features that are zero except one pixel of `layer`,
    all head kernels zero except, in `layer`'s `head` ("mbox_loc" or "mbox_conf"), the centre
    tap from that channel to output `channel`."""
    inputs = {
        name: keras.Input((h, w, 1), name=name)
        for name, (h, w) in zip(config.source_layers, feature_map_sizes(config), strict=True)
    }
    heads = keras.Model(inputs, build_heads(config, inputs))
    for weights_layer in heads.layers:
        if weights_layer.weights:
            weights_layer.set_weights([np.zeros_like(w) for w in weights_layer.get_weights()])
    features = {
        name: np.zeros((1, h, w, 1), np.float32)
        for name, (h, w) in zip(config.source_layers, feature_map_sizes(config), strict=True)
    }
    source = config.source_layers[layer]
    features[source][0, row, col, 0] = 1.0
    kernel = heads.get_layer(f"{source}_{head}").kernel
    value = np.zeros(kernel.shape, np.float32)
    value[1, 1, 0, channel] = 1.0
    kernel.assign(value)
    return heads, features


@pytest.mark.parametrize(
    ("layer", "row", "col", "box", "coord"),
    [(1, 7, 11, 3, 2), (3, 2, 4, 5, 1)],  # fc7 box 3 (ar 0.5), conv7_2 box 5 (ar 1/3)
)
def test_loc_head_row_for_pixel_and_box_is_the_anchor_there(layer, row, col, box, coord):
    config = SSDConfig.preset("ssd300_voc")
    heads, features = _one_hot_heads_output(config, layer, row, col, "mbox_loc", box * 4 + coord)
    loc = heads.predict(features, verbose=0)["bbox_regression"][0]
    rows, cols = np.nonzero(loc)
    assert cols.tolist() == [coord]
    anchor = generate_anchors(config)[rows[0]]
    step = config.steps[layer]
    centre = np.array([(col + 0.5) * step, (row + 0.5) * step]) / 300.0
    np.testing.assert_allclose((anchor[:2] + anchor[2:]) / 2, centre, atol=1e-6)
    # The box's shape, by the PriorBox formula: min_size * sqrt(ar) wide, min_size / sqrt(ar) high.
    min_size = {1: 60.0, 3: 162.0}[layer]
    ratio = config.aspect_ratios[layer][box - 1]  # box 0: ar 1, box 1: sqrt box, then ratios
    width, height = anchor[2:] - anchor[:2]
    np.testing.assert_allclose(
        [width, height],
        np.array([np.sqrt(ratio), 1 / np.sqrt(ratio)]) * min_size / 300.0,
        rtol=1e-5,
    )


def test_conf_head_row_for_pixel_and_box_is_the_anchor_there():
    config = SSDConfig.preset("ssd300_voc")
    layer, row, col, box, cls = 2, 6, 3, 4, 15  # conv6_2, box 4 (ar 3), class "person"
    heads, features = _one_hot_heads_output(config, layer, row, col, "mbox_conf", box * 21 + cls)
    conf = heads.predict(features, verbose=0)["cls_logits"][0]
    rows, cols = np.nonzero(conf)
    assert cols.tolist() == [cls]
    offsets = _layer_offsets(config)
    assert rows.tolist() == [offsets[layer] + (row * 10 + col) * 6 + box]


# Serialisation.


def test_ssd_config_round_trip_keeps_non_default_arguments():
    decoder = DecoderConfig(method="fast", score_threshold=0.3, top_k=50)
    model = SSD(TINY_SSD7, mode="training", decoder_config=decoder)
    clone = SSD.from_config(model.get_config())
    assert clone.ssd_config == TINY_SSD7
    assert clone.decoder_config == decoder


def test_models_saved_with_decoder_keywords_still_load():
    # The form of `get_config` before the DecoderConfig (the shipped assets have it).
    legacy = {"ssd_config": TINY_SSD7.to_dict(), "mode": "inference", "decoder": "fast",
              "score_threshold": 0.2, "iou_threshold": 0.5, "top_k": 30, "max_detections": 7,
              "name": "old", "trainable": True}  # fmt: skip
    model = SSD.from_config(legacy)
    assert model.decoder_config == DecoderConfig("fast", 0.2, 0.5, 30, 7, clip=True)
    assert model.get_layer("detection_decoder").decoder_config == model.decoder_config


def test_saved_model_loads_in_a_fresh_process_with_identical_outputs(tiny_ssd7, tmp_path):
    path = tmp_path / "tiny.keras"
    tiny_ssd7.save(path)
    images = _images(TINY_SSD7, 2, seed=5)
    np.save(tmp_path / "images.npy", images)
    script = textwrap.dedent(
        f"""
        import json, numpy as np, keras
        import ssd_core
        model = keras.saving.load_model({str(path)!r})
        out = model(np.load({str(tmp_path / "images.npy")!r}))
        np.save({str(tmp_path / "loc.npy")!r}, out["bbox_regression"].numpy())
        np.save({str(tmp_path / "conf.npy")!r}, out["cls_logits"].numpy())
        print(json.dumps({{"type": type(model).__name__, "config": model.ssd_config.to_dict()}}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["type"] == "SSD"
    assert SSDConfig.from_dict(loaded["config"]) == TINY_SSD7
    expected = tiny_ssd7(images)
    np.testing.assert_allclose(
        np.load(tmp_path / "loc.npy"), expected["bbox_regression"].numpy(), atol=1e-5
    )
    np.testing.assert_allclose(
        np.load(tmp_path / "conf.npy"), expected["cls_logits"].numpy(), atol=1e-5
    )


# Inference mode (decoder from ssd_core.postprocess).


def test_ssd300_inference_outputs_are_padded_detections():
    model = build_model(SSDConfig.preset("ssd300_voc"), "inference", DecoderConfig())
    specs = {key: (tuple(t.shape), t.dtype) for key, t in model.output.items()}
    assert specs == {
        "boxes": ((None, 200, 4), "float32"),
        "scores": ((None, 200), "float32"),
        "labels": ((None, 200), "int32"),
        "num_detections": ((None,), "int32"),
    }


def test_to_inference_copies_every_weight_by_layer_name(tiny_ssd7):
    inference = to_inference(tiny_ssd7)
    weighted = [layer for layer in tiny_ssd7.layers if layer.weights]
    assert len(weighted) == 7 + 7 + 8  # 7 convs, 7 batch norms, 4 loc + 4 conf heads
    for layer in weighted:
        for ours, theirs in zip(
            layer.get_weights(), inference.get_layer(layer.name).get_weights(), strict=True
        ):
            np.testing.assert_array_equal(ours, theirs)


def test_inference_output_is_the_decoder_applied_to_training_output(tiny_ssd7):
    decoder_config = DecoderConfig(method="fast", score_threshold=0.2, max_detections=7)
    inference = to_inference(tiny_ssd7, decoder_config)
    images = _images(TINY_SSD7, 2, seed=7)
    expected = DetectionDecoder(TINY_SSD7, decoder_config)(tiny_ssd7(images))
    got = inference(images)
    assert tuple(got["boxes"].shape) == (2, 7, 4)
    for key in fields.DETECTION_OUTPUTS:
        np.testing.assert_allclose(got[key].numpy(), expected[key].numpy(), atol=1e-5)


def test_to_inference_keeps_the_decoder_unless_given_one(tiny_ssd7):
    decoder = DecoderConfig(method="fast", iou_threshold=0.3, top_k=20, clip=False)
    first = to_inference(SSD(TINY_SSD7, decoder_config=decoder))
    assert (first.mode, first.decoder_config) == ("inference", decoder)
    second = to_inference(first, decoder.replace(max_detections=5))
    assert second.decoder_config == DecoderConfig("fast", 0.01, 0.3, 20, 5, clip=False)
    assert second.get_layer("detection_decoder").decoder_config.clip is False


def test_clip_false_keeps_boxes_that_leave_the_image(tiny_ssd7):
    # Large regression biases push every decoded box past the image border.
    model = build_model(TINY_SSD7)
    model.set_weights(tiny_ssd7.get_weights())
    for source in TINY_SSD7.source_layers:
        loc = model.get_layer(f"{source}_mbox_loc")
        kernel, bias = loc.get_weights()
        loc.set_weights([np.zeros_like(kernel), np.tile([0.0, 0.0, 10.0, 10.0], len(bias) // 4)])
    images = _images(TINY_SSD7, 1, seed=5)
    decoder = DecoderConfig(max_detections=20)
    clipped = to_inference(model, decoder)(images)["boxes"].numpy()
    unclipped = to_inference(model, decoder.replace(clip=False))(images)["boxes"].numpy()
    assert clipped.min() >= 0.0 and clipped.max() <= 1.0
    assert unclipped.min() < -1.0 and unclipped.max() > 2.0


def test_inference_model_round_trips_through_a_keras_file(tiny_ssd7, tmp_path):
    decoder = DecoderConfig(method="fast", score_threshold=0.05, max_detections=9)
    inference = to_inference(tiny_ssd7, decoder)
    path = tmp_path / "inference.keras"
    inference.save(path)
    loaded = keras.saving.load_model(path)
    assert (loaded.mode, loaded.decoder_config) == ("inference", decoder)
    images = _images(TINY_SSD7, 2, seed=9)
    expected, got = inference(images), loaded(images)
    for key in fields.DETECTION_OUTPUTS:
        np.testing.assert_array_equal(got[key].numpy(), expected[key].numpy())
