"""ResNet-10 SSD300 backbone of OpenCV's Caffe face detector (`res10_300x300_ssd_iter_140000`).

Layer for layer the network of its `deploy.prototxt`, with the Caffe layer names, so the
published `.caffemodel` loads by name:

- input `data_bn` / `data_scale` (BatchNorm + Scale on the mean-subtracted BGR image);
- `conv1_h` 7x7/2 pad 3 with BatchNorm/Scale/ReLU, `conv1_pool` 3x3/2 max (Caffe ceil mode);
- four pre-activation residual blocks `layer_64_1` .. `layer_512_1`: BatchNorm/Scale/ReLU, a
  3x3 conv, BatchNorm/Scale/ReLU, a 3x3 conv, plus the shortcut (the block input, or a 1x1
  `conv_expand` of the pre-activated input when the shape changes). `layer_64_1` has no
  pre-activation (its input is already `conv1`'s BatchNorm/Scale/ReLU), `layer_512_1` keeps
  stride 1 and dilates its second conv by 2 instead;
- `last_bn_h` / `last_scale_h` / ReLU give `fc7`; `conv4_3_norm` (L2 normalisation) reads the
  pre-activated input of `layer_256_1` (the top `layer_256_1_bn1` after its in-place Scale and
  ReLU);
- the extra layers `conv6_1_h` .. `conv9_2_h` (1x1 reduce + 3x3, ReLU); conv8_2 and conv9_2
  are stride 1 with pad 1, so the last three sources are all 5x5 at 300x300.

Some Caffe names end in `_h` and some do not; they are copied as published. The predictor
sources are named after the heads (`conv6_2_mbox_loc` reads blob `conv6_2_h`).
"""

from __future__ import annotations

from typing import Any

from keras import layers

from ssd_core.backbones import Backbone, BackboneGraph
from ssd_core.backbones.caffe_ops import batch_norm_scale, conv, max_pool
from ssd_core.layers import L2Normalization

SOURCES = ("conv4_3_norm", "fc7", "conv6_2", "conv7_2", "conv8_2", "conv9_2")

# conv4_3 L2 normalisation, scale_filler 20 (the face detector's deploy.prototxt).
CONV4_3_NORM_SCALE = 20.0

# Residual blocks: (block width in the name, conv1 channels, conv2 channels, conv1 stride,
# conv2 dilation, the parts whose Caffe names end in "_h").
_BLOCKS: tuple[tuple[int, int, int, int, int, set[str]], ...] = (
    (64, 32, 32, 1, 1, {"conv1", "bn2", "scale2", "conv2"}),
    (128, 128, 128, 2, 1, {"bn1", "scale1", "conv1", "conv_expand"}),
    (256, 256, 256, 2, 1, set()),
    (512, 128, 256, 1, 2, {"conv1", "bn2", "scale2", "conv2", "conv_expand"}),
)

# Extra layers: (number, 1x1 channels, 3x3 channels, 3x3 stride).
_EXTRAS = ((6, 128, 256, 2), (7, 64, 128, 2), (8, 64, 128, 1), (9, 64, 128, 1))


def _residual_block(x: Any, spec: tuple) -> tuple[Any, Any]:
    """One pre-activation residual block; returns (block output, pre-activated input)."""
    width, channels1, channels2, stride, dilation, with_h = spec

    def name(part: str) -> str:
        return f"layer_{width}_1_{part}" + ("_h" if part in with_h else "")

    if width == 64:  # conv1's BatchNorm/Scale/ReLU already pre-activated the input
        preact = x
    else:
        preact = batch_norm_scale(x, name("bn1"), name("scale1"), f"layer_{width}_1_relu1")
    y = conv(preact, name("conv1"), channels1, 3, stride=stride, pad=1, bias=False, relu=False)
    y = batch_norm_scale(y, name("bn2"), name("scale2"), f"layer_{width}_1_relu2")
    y = conv(
        y, name("conv2"), channels2, 3, pad=dilation, dilation=dilation, bias=False, relu=False
    )
    if width == 64:
        shortcut = x
    else:
        shortcut = conv(preact, name("conv_expand"), channels2, 1, stride=stride, bias=False,
                        relu=False)  # fmt: skip
    return layers.Add(name=f"layer_{width}_1_sum")([y, shortcut]), preact


def build_res10_graph(images: Any, layout: str) -> BackboneGraph:
    """The face detector's network on `images` (B, H, W, 3) float32, mean-subtracted BGR.

    Returns:
        The six source feature maps (at 300x300: 38x38x128, 19x19x256, 10x10x256, 5x5x128,
        5x5x128, 5x5x128); the base ends at fc7.
    """
    x = batch_norm_scale(images, "data_bn", "data_scale")
    x = conv(x, "conv1_h", 32, 7, stride=2, pad=3, relu=False)
    x = batch_norm_scale(x, "conv1_bn_h", "conv1_scale_h", "conv1_relu")
    x = max_pool(x, "conv1_pool", kernel=3, stride=2)
    preacts = {}
    for spec in _BLOCKS:
        x, preacts[spec[0]] = _residual_block(x, spec)
    fc7 = batch_norm_scale(x, "last_bn_h", "last_scale_h", "last_relu")
    features = {
        "conv4_3_norm": L2Normalization(scale_init=CONV4_3_NORM_SCALE, name="conv4_3_norm")(
            preacts[256]
        ),
        "fc7": fc7,
    }
    x = fc7
    for number, channels1, channels2, stride in _EXTRAS:
        x = conv(x, f"conv{number}_1_h", channels1, 1)
        x = features[f"conv{number}_2"] = conv(x, f"conv{number}_2_h", channels2, 3,
                                               stride=stride, pad=1)  # fmt: skip
    return BackboneGraph(features=features, base=fc7)


BACKBONE = Backbone(name="res10", layouts={"ssd300": SOURCES}, build_graph=build_res10_graph)
