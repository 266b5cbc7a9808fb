"""The keys of the dictionaries passed between the network, the decoder, the loss, the engines
and the tools, named once (the role of TF object detection's `standard_fields`).

A class index is a *label* everywhere: 0 is background, 1..C-1 the foreground classes
(`SSDConfig.class_names[label - 1]`).
"""

from __future__ import annotations

# Raw network outputs (a training-mode SSD), torchvision's names.
CLS_LOGITS = "cls_logits"  # (B, N, C) float32 class logits, softmax not applied
BBOX_REGRESSION = "bbox_regression"  # (B, N, 4) float32 box deltas (`ssd_core.box_coder`)
NETWORK_OUTPUTS = (CLS_LOGITS, BBOX_REGRESSION)

# Decoded detections (an inference-mode SSD, an engine), padded to K = max_detections rows.
BOXES = "boxes"  # (B, K, 4) float32 normalised [xmin, ymin, xmax, ymax]
SCORES = "scores"  # (B, K) float32, descending
LABELS = "labels"  # (B, K) int32 labels 1..C-1
NUM_DETECTIONS = "num_detections"  # (B,) int32 valid leading rows of each image
DETECTION_OUTPUTS = (BOXES, SCORES, LABELS, NUM_DETECTIONS)
DETECTION_DTYPES = {BOXES: "float32", SCORES: "float32", LABELS: "int32", NUM_DETECTIONS: "int32"}

# Training targets, one row per anchor (`ssd_core.matching`, `ssd_core.losses`).
CLS_TARGETS = "cls_targets"  # (B, N) int32: 0 background, 1..C-1 label, -1 ignored
BOX_TARGETS = "box_targets"  # (B, N, 4) float32 encoded deltas of the matched box
