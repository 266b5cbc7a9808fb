"""Anchor (default box, Caffe "prior box") generation.

The layout is that of Caffe's `PriorBox` layers concatenated by `mbox_priorbox`: predictor
layer, then feature-map row, then column, then box. Per location the boxes are: ratio 1 at size
`s_k`, ratio 1 at `sqrt(s_k * s_k+1)` (with `two_boxes_for_ar1`), then the other aspect ratios
in config order, each `s_k * sqrt(ar)` wide and `s_k / sqrt(ar)` high.
"""

from __future__ import annotations

import numpy as np

from ssd_core.backbones import feature_map_sizes
from ssd_core.config import SSDConfig


def anchor_sizes(config: SSDConfig) -> tuple[tuple[float, float], ...]:
    """(min_size, max_size) in pixels for every predictor layer.

    `scales` times the shorter image side, truncated to integers when the config asks for
    Caffe's PriorBox behaviour (`integer_anchor_sizes`).
    """
    min_dim = min(config.image_size)
    sizes = [scale * min_dim for scale in config.scales]
    if config.integer_anchor_sizes:
        # Caffe: `int min_size_ = min_sizes_[s];` truncates toward zero. Round first so that
        # 0.37 * 300 = 110.99999... still gives 111 as in the Caffe prototxt (min_size: 111.0).
        sizes = [float(int(round(size, 6))) for size in sizes]
    return tuple((sizes[k], sizes[k + 1]) for k in range(config.num_layers))


def layer_box_shapes(config: SSDConfig, layer: int) -> list[tuple[float, float]]:
    """(width, height) in pixels of the boxes at one location of predictor layer `layer`."""
    min_size, max_size = anchor_sizes(config)[layer]
    shapes = []
    for index, ratio in enumerate(config.aspect_ratios[layer]):
        if ratio == 1.0 and index == 0:
            shapes.append((min_size, min_size))
            if config.two_boxes_for_ar1:
                side = float(np.sqrt(min_size * max_size))
                shapes.append((side, side))
        else:
            root = float(np.sqrt(ratio))
            shapes.append((min_size * root, min_size / root))
    return shapes


def generate_anchors(config: SSDConfig) -> np.ndarray:
    """All anchors of a model.

    Returns:
        (N, 4) float32, normalised `[xmin, ymin, xmax, ymax]` (not clipped unless `config.clip`),
        in Caffe PriorBox order. N is 8732 for SSD300 and 24564 for SSD512.
    """
    image_h, image_w = config.image_size
    per_layer = []
    for layer, (feat_h, feat_w) in enumerate(feature_map_sizes(config)):
        step = None if config.steps is None else config.steps[layer]
        step_h = image_h / feat_h if step is None else step
        step_w = image_w / feat_w if step is None else step
        centre_y = (np.arange(feat_h, dtype=np.float64) + config.offsets) * step_h
        centre_x = (np.arange(feat_w, dtype=np.float64) + config.offsets) * step_w
        cy, cx = np.meshgrid(centre_y, centre_x, indexing="ij")  # (H, W)
        shapes = np.asarray(layer_box_shapes(config, layer), dtype=np.float64)  # (A, 2)
        half_w = shapes[:, 0] / 2.0
        half_h = shapes[:, 1] / 2.0
        # (H, W, 1) against (A,) -> (H, W, A, 4) -> (H*W*A, 4)
        boxes = np.stack(
            [
                (cx[..., None] - half_w) / image_w,
                (cy[..., None] - half_h) / image_h,
                (cx[..., None] + half_w) / image_w,
                (cy[..., None] + half_h) / image_h,
            ],
            axis=-1,
        ).reshape(-1, 4)
        per_layer.append(boxes)
    anchors = np.concatenate(per_layer, axis=0)
    if config.clip:
        anchors = np.clip(anchors, 0.0, 1.0)
    return anchors.astype(np.float32)
