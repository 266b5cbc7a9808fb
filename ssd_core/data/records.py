"""The record type every dataset parser produces, and the checks they share.

An `ImageRecord` is one image and its objects. Boxes are in pixels of the original image,
`[xmin, ymin, xmax, ymax]`, exactly as the annotation gives them (Pascal VOC's 1-based
coordinates are kept as they are, like Caffe SSD's converter does, so the VOC devkit's `+1`
area convention applies to them unchanged). Labels are 1-based: label `i + 1` is
`class_names[i]`; label 0 is background and never appears in a record.

A `DetectionDataset` is a tuple of records plus the foreground class names.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

logger = logging.getLogger(__name__)

ON_INVALID_BOX_CHOICES = ("skip", "fail")

# Boxes may overshoot the image by up to this many pixels (float rounding in COCO, VOC's
# 1-based xmax == width) before they count as outside; smaller overshoots are clipped.
EDGE_TOLERANCE_PX = 1.0


class DatasetError(ValueError):
    """An annotation cannot be used: unknown class, invalid box, malformed file."""


def _readonly(array: np.ndarray) -> np.ndarray:
    array = np.array(array, copy=True)
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class ImageRecord:
    """One annotated image.

    Attributes:
        image_path: path of the image file.
        boxes: (M, 4) float32, pixels [xmin, ymin, xmax, ymax] in the original image.
        labels: (M,) int32, in 1..num_classes-1 (label i+1 is `class_names[i]`).
        difficult: (M,) bool, objects that evaluation ignores (VOC `difficult`, COCO `iscrowd`).
        image_id: identifier unique within the dataset (VOC id, COCO id as a string, file stem).
        width, height: image size in pixels if the annotation gives it, else None.
        truncated: (M,) bool, objects cut by the image border; all False if not given.
        crowd: (M,) bool, COCO `iscrowd` regions (also `difficult`); all False if not given.
            Training never matches them as positives (`training_objects`).
    """

    image_path: str
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray
    image_id: str
    width: int | None = None
    height: int | None = None
    truncated: np.ndarray | None = field(default=None)
    crowd: np.ndarray | None = field(default=None)

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        m = boxes.shape[0]
        labels = np.asarray(self.labels, dtype=np.int32).reshape(-1)
        difficult = np.asarray(self.difficult, dtype=bool).reshape(-1)
        truncated, crowd = (
            np.zeros(m, dtype=bool) if flags is None else np.asarray(flags, dtype=bool).reshape(-1)
            for flags in (self.truncated, self.crowd)
        )
        named = (("labels", labels), ("difficult", difficult), ("truncated", truncated),
                 ("crowd", crowd))  # fmt: skip
        for name, array in named:
            if array.shape != (m,):
                raise ValueError(
                    f"image {self.image_id!r}: {name} must have shape ({m},) to match boxes, "
                    f"got {array.shape}"
                )
        if m and labels.min() < 1:
            raise ValueError(
                f"image {self.image_id!r}: labels must be >= 1 (0 is background), "
                f"got {labels.tolist()}"
            )
        object.__setattr__(self, "boxes", _readonly(boxes))
        object.__setattr__(self, "labels", _readonly(labels))
        object.__setattr__(self, "difficult", _readonly(difficult))
        object.__setattr__(self, "truncated", _readonly(truncated))
        object.__setattr__(self, "crowd", _readonly(crowd))
        object.__setattr__(self, "image_id", str(self.image_id))
        object.__setattr__(self, "image_path", str(self.image_path))

    @property
    def num_objects(self) -> int:
        return int(self.boxes.shape[0])

    def training_objects(self) -> tuple[np.ndarray, np.ndarray]:
        """(boxes (K, 4) pixels, labels (K,)) of the objects training matches to anchors: all
        but crowd regions. A crowd box covers many instances at once; matched as a positive
        it would teach one box for the crowd. torchvision's detection references drop them
        the same way (`iscrowd == 0` only), and COCOeval ignores them."""
        assert self.crowd is not None  # set by __post_init__
        keep = ~self.crowd
        return self.boxes[keep], self.labels[keep]

    def ground_truth(self) -> list[dict]:
        """The objects in the `evaluate_voc` ground-truth format (pixel boxes)."""
        return [
            {"label": int(label), "box": [float(v) for v in box], "difficult": bool(diff)}
            for box, label, diff in zip(self.boxes, self.labels, self.difficult, strict=True)
        ]


@dataclass(frozen=True, eq=False)
class DetectionDataset:
    """Records plus the foreground class names (label i+1 is `class_names[i]`)."""

    records: tuple[ImageRecord, ...]
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "records", tuple(self.records))
        object.__setattr__(self, "class_names", tuple(self.class_names))
        if len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"class_names must be unique, got {self.class_names}")
        top = len(self.class_names)
        for record in self.records:
            if record.num_objects and record.labels.max() > top:
                raise ValueError(
                    f"image {record.image_id!r} has label {int(record.labels.max())} but only "
                    f"{top} class names are given"
                )

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[ImageRecord]:
        return iter(self.records)

    def __getitem__(self, index: int) -> ImageRecord:
        return self.records[index]

    @property
    def num_classes(self) -> int:
        """Number of classes counting background, as `SSDConfig.num_classes`."""
        return len(self.class_names) + 1

    @property
    def label_names(self) -> tuple[str, ...]:
        """Names indexed by label, `label_names[0] == "background"`."""
        return ("background", *self.class_names)

    def ground_truth(self) -> dict[str, list[dict]]:
        """image_id -> objects, the `evaluate_voc` ground-truth format (pixel boxes)."""
        return {record.image_id: record.ground_truth() for record in self.records}

    def with_class_names(self, class_names: Sequence[str]) -> DetectionDataset:
        """The same records relabelled for another class list, matching classes by name.

        Raises:
            DatasetError: a class used by some object is not in `class_names`.
        """
        class_names = tuple(class_names)
        index = {name: i + 1 for i, name in enumerate(class_names)}
        old_to_new = np.zeros(len(self.class_names) + 1, dtype=np.int32)
        for old_label, name in enumerate(self.class_names, start=1):
            old_to_new[old_label] = index.get(name, 0)
        records = []
        for record in self.records:
            new_labels = old_to_new[record.labels]
            if np.any(new_labels == 0):
                i = int(np.flatnonzero(new_labels == 0)[0])
                name = self.class_names[record.labels[i] - 1]
                raise DatasetError(
                    f"{record.image_path}: object {i} has class {name!r}, which is not in the "
                    f"class list {list(class_names)}"
                )
            records.append(_replace_labels(record, new_labels))
        return DetectionDataset(tuple(records), class_names)


def _replace_labels(record: ImageRecord, labels: np.ndarray) -> ImageRecord:
    return ImageRecord(
        image_path=record.image_path,
        boxes=record.boxes,
        labels=labels,
        difficult=record.difficult,
        image_id=record.image_id,
        width=record.width,
        height=record.height,
        truncated=record.truncated,
        crowd=record.crowd,
    )


def check_on_invalid_box(on_invalid_box: str) -> None:
    if on_invalid_box not in ON_INVALID_BOX_CHOICES:
        raise ValueError(
            f"on_invalid_box must be one of {ON_INVALID_BOX_CHOICES}, got {on_invalid_box!r}"
        )


def box_problem(box: Sequence[float], width: int | None, height: int | None) -> str | None:
    """Why a pixel [xmin, ymin, xmax, ymax] box is unusable, or None if it is fine.

    A box is invalid if it is empty (xmax <= xmin or ymax <= ymin), not finite, or, when the
    image size is known, reaches outside the image by more than `EDGE_TOLERANCE_PX`.
    """
    xmin, ymin, xmax, ymax = (float(v) for v in box)
    if not all(np.isfinite([xmin, ymin, xmax, ymax])):
        return f"box {list(box)} is not finite"
    if xmax <= xmin or ymax <= ymin:
        return f"box {list(box)} is empty (needs xmax > xmin and ymax > ymin)"
    tol = EDGE_TOLERANCE_PX
    if xmin < -tol or ymin < -tol:
        return f"box {list(box)} starts outside the image (negative coordinate)"
    if width is not None and xmax > width + tol:
        return f"box {list(box)} ends outside the image (xmax > width {width})"
    if height is not None and ymax > height + tol:
        return f"box {list(box)} ends outside the image (ymax > height {height})"
    return None


def clip_box(box: Sequence[float], width: int | None, height: int | None) -> list[float]:
    """Clip a valid pixel box into [0, width] x [0, height] (removes tolerated overshoot)."""
    xmin, ymin, xmax, ymax = (float(v) for v in box)
    xmin, ymin = max(xmin, 0.0), max(ymin, 0.0)
    if width is not None:
        xmax = min(xmax, float(width))
    if height is not None:
        ymax = min(ymax, float(height))
    return [xmin, ymin, xmax, ymax]


def handle_invalid_box(source: str, object_index: int, problem: str, on_invalid_box: str) -> None:
    """Raise (on_invalid_box="fail") or log and let the caller skip ("skip") an invalid box."""
    message = f"{source}: object {object_index}: {problem}"
    if on_invalid_box == "fail":
        raise DatasetError(message + " (pass on_invalid_box='skip' to drop such objects)")
    logger.warning("skipping invalid object: %s", message)


def checked_box(
    source: str,
    object_index: int,
    box: Sequence[float],
    width: int | None,
    height: int | None,
    on_invalid_box: str,
) -> list[float] | None:
    """A parsed pixel box clipped into the image, or None for an invalid box to skip.

    Raises:
        DatasetError: the box is invalid and on_invalid_box is "fail" (see `box_problem`).
    """
    problem = box_problem(box, width, height)
    if problem is not None:
        handle_invalid_box(source, object_index, problem, on_invalid_box)
        return None
    return clip_box(box, width, height)


def unknown_class_error(source: str, object_index: int, name: str, class_names: Sequence[str]):
    """The error for an object whose class is not in the class list."""
    return DatasetError(
        f"{source}: object {object_index} has class {name!r}, which is not in the class list "
        f"{list(class_names)}"
    )


def make_record(
    *,
    image_path: str,
    image_id: str,
    objects: Sequence[
        tuple[list[float], int, bool, bool] | tuple[list[float], int, bool, bool, bool]
    ],
    width: int | None,
    height: int | None,
) -> ImageRecord:
    """Build a record from (box, label, difficult, truncated[, crowd]) tuples of already
    checked objects (crowd: False unless given)."""
    return ImageRecord(
        image_path=image_path,
        boxes=np.array([o[0] for o in objects], dtype=np.float32).reshape(-1, 4),
        labels=np.array([o[1] for o in objects], dtype=np.int32),
        difficult=np.array([o[2] for o in objects], dtype=bool),
        image_id=image_id,
        width=width,
        height=height,
        truncated=np.array([o[3] for o in objects], dtype=bool),
        crowd=np.array([len(o) > 4 and o[4] for o in objects], dtype=bool),
    )
