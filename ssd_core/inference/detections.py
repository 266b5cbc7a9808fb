"""Typed per-image detections in original-image pixels, made from a model's padded outputs.

A model (or an engine) returns fixed-size padded outputs for a batch (`ssd_core.fields`):
`boxes` (B, K, 4) normalised, `scores` (B, K), `labels` (B, K), `num_detections` (B,).
`split_outputs` cuts them into one unpadded dict per image; `to_detections` maps one image's
boxes to its pixels through its `Placement` (the one normalised-to-pixel mapping) and drops
boxes with no area inside the image: a model decoded without clipping (Caffe semantics) can
score boxes wholly outside it (the face detector's conv8_2 / conv9_2 anchors reach 4.5 image
widths out), and nothing of such a box is in the image.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ssd_core import fields
from ssd_core.decoder_config import passes_score_threshold
from ssd_core.inference.preprocess import Placement

ImageOutputs = dict[str, np.ndarray]
"""One image's model outputs, padding removed: `boxes` (n, 4) normalised model-input
[xmin, ymin, xmax, ymax], `scores` (n,), `labels` (n,) int32."""


@dataclass(frozen=True, eq=False)
class Detections:
    """The detections of one image, sorted by descending score.

    Attributes:
        boxes: (n, 4) float32, [xmin, ymin, xmax, ymax] in the original image's pixels.
        scores: (n,) float32.
        labels: (n,) int32 labels 1..C-1 (0 is background).
        names: (n,) the class name of each label.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    names: tuple[str, ...]

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        scores = np.asarray(self.scores, np.float32).reshape(-1)
        labels = np.asarray(self.labels, np.int32).reshape(-1)
        count = len(boxes)
        if len(scores) != count or len(labels) != count or len(self.names) != count:
            raise ValueError(
                f"boxes, scores, labels and names need one row per detection, got {count}, "
                f"{len(scores)}, {len(labels)}, {len(self.names)}"
            )
        for name, array in (("boxes", boxes), ("scores", scores), ("labels", labels)):
            array = array.copy()
            array.setflags(write=False)
            object.__setattr__(self, name, array)
        object.__setattr__(self, "names", tuple(self.names))

    def __len__(self) -> int:
        return len(self.scores)

    def rows(self) -> Iterator[tuple[list[float], float, int, str]]:
        """One `(box [xmin, ymin, xmax, ymax] pixels, score, label, name)` per detection, best
        first, as Python numbers for JSON and protobuf writers: each float is the shortest
        decimal that reads back as the same float32 (179.4, not 179.39999389648438)."""
        for box, score, label, name in zip(
            self.boxes, self.scores, self.labels.tolist(), self.names, strict=True
        ):
            yield [_shortest(value) for value in box], _shortest(score), label, name

    def take(self, index: np.ndarray) -> Detections:
        """The detections at `index` (integer positions or a boolean mask), in that order."""
        rows = np.arange(len(self))[index]
        return Detections(
            self.boxes[rows],
            self.scores[rows],
            self.labels[rows],
            tuple(self.names[i] for i in rows),
        )

    def filter(
        self,
        *,
        score_threshold: float | None = None,
        labels: Collection[int] | None = None,
        max_detections: int | None = None,
    ) -> Detections:
        """The detections passing a score threshold (the `ssd_core.decoder_config` rule: above
        it) and of the given labels, at most `max_detections` of them (the best); None: no
        condition."""
        keep = np.ones(len(self), bool)
        if score_threshold is not None:
            keep &= passes_score_threshold(self.scores, score_threshold)
        if labels is not None:
            keep &= np.isin(self.labels, list(labels))
        return self.take(np.flatnonzero(keep)[:max_detections])


def _shortest(value: np.float32) -> float:
    return float(str(value))


def split_outputs(outputs: Mapping[str, np.ndarray]) -> list[ImageOutputs]:
    """Padded batch outputs (`ssd_core.fields.DETECTION_OUTPUTS`) -> one unpadded dict per image."""
    counts = np.asarray(outputs[fields.NUM_DETECTIONS]).reshape(-1)
    return [
        {
            fields.BOXES: np.asarray(outputs[fields.BOXES][i, :n], np.float32),
            fields.SCORES: np.asarray(outputs[fields.SCORES][i, :n], np.float32),
            fields.LABELS: np.asarray(outputs[fields.LABELS][i, :n], np.int32),
        }
        for i, n in enumerate(int(count) for count in counts)
    ]


def to_detections(
    outputs: ImageOutputs, placement: Placement, label_names: Sequence[str]
) -> Detections:
    """One image's outputs as `Detections` in its original pixels, sorted by score.

    Args:
        outputs: the image's unpadded outputs (`split_outputs`).
        placement: where the image lay in the model input (`ssd_core.inference.preprocess`).
        label_names: names by label, background first (`SSDConfig.label_names`).

    Boxes are clipped to the image; boxes with no area inside it are dropped.
    """
    scores = np.asarray(outputs[fields.SCORES], np.float32)
    order = np.argsort(-scores, kind="stable")
    boxes = placement.to_original(outputs[fields.BOXES])[order]
    labels = np.asarray(outputs[fields.LABELS], np.int32)[order]
    inside = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return Detections(
        boxes[inside],
        scores[order][inside],
        labels[inside],
        tuple(label_names[label] for label in labels[inside]),
    )
