"""SSD prediction heads: per source layer a 3x3 box-regression and a 3x3 classification conv.

Channel layout is Caffe's: channel `a * 4 + j` of `<source>_mbox_loc` is coordinate `j` of box
`a`, channel `a * C + c` of `<source>_mbox_conf` is class `c` of box `a`. A row-major NHWC
reshape therefore orders predictions by row, column, box, which is the anchor order of
`generate_anchors`; concatenating the layers in `config.source_layers` order completes it.
"""

from __future__ import annotations

from typing import Any

from keras import layers

from ssd_core import fields
from ssd_core.config import SSDConfig


def _head(feature: Any, name: str, boxes: int, values: int) -> Any:
    """3x3 conv with `boxes * values` channels, reshaped to one row per anchor.

    (B, H, W, A*V) -> (B, H*W*A, V).
    """
    x = layers.Conv2D(boxes * values, 3, padding="same", name=name)(feature)
    return layers.Reshape((-1, values), name=f"{name}_flat")(x)


def build_heads(config: SSDConfig, features: dict[str, Any]) -> dict[str, Any]:
    """Raw SSD predictions for all anchors.

    Args:
        config: the model config (`source_layers`, `boxes_per_location`, `num_classes`).
        features: `{source_layer_name: (B, H_k, W_k, C_k)}` for every `config.source_layers`.

    Returns:
        `{"cls_logits": (B, N, num_classes) class logits (softmax not applied),
        "bbox_regression": (B, N, 4) box offsets (cx, cy, w, h) relative to the anchors, still
        scaled by the variances}`, N the number of anchors, in `generate_anchors` order.
    """
    missing = [name for name in config.source_layers if name not in features]
    if missing:
        raise ValueError(f"features lack source layer(s) {missing}; got {sorted(features)}")
    locs, confs = [], []
    for source, boxes in zip(config.source_layers, config.boxes_per_location, strict=True):
        locs.append(_head(features[source], f"{source}_mbox_loc", boxes, 4))
        confs.append(_head(features[source], f"{source}_mbox_conf", boxes, config.num_classes))
    # Caffe's mbox_loc / mbox_conf concatenations; one layer needs no concat.
    if len(locs) == 1:
        return {fields.CLS_LOGITS: confs[0], fields.BBOX_REGRESSION: locs[0]}
    return {
        fields.CLS_LOGITS: layers.Concatenate(axis=1, name="mbox_conf")(confs),
        fields.BBOX_REGRESSION: layers.Concatenate(axis=1, name="mbox_loc")(locs),
    }
