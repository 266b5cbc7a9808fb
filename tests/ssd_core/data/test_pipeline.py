"""The tf.data training/evaluation pipelines on a tiny on-disk dataset."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import tensorflow as tf

from ssd_core.anchors import generate_anchors
from ssd_core.box_coder import decode_boxes
from ssd_core.config import SSDConfig
from ssd_core.data.pipeline import epoch_permutation_index, training_dataset
from ssd_core.data.records import ImageRecord

CONFIG = SSDConfig.preset("ssd7").replace(image_size=(64, 96))
RED = (255, 0, 0)


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> list[ImageRecord]:
    """Three 48x80 PNGs: one red rectangle each (label 1), plus one image without objects."""
    root = tmp_path_factory.mktemp("pipeline")
    result = []
    rects = [(10, 8, 40, 30), (30, 20, 70, 44), (0, 0, 20, 48), None]
    for i, rect in enumerate(rects):
        image = np.full((48, 80, 3), 40, np.uint8)
        boxes = np.zeros((0, 4), np.float32)
        if rect is not None:
            x0, y0, x1, y1 = rect
            image[y0:y1, x0:x1] = RED
            boxes = np.array([rect], np.float32)
        path = Path(root) / f"{i}.png"
        cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        result.append(
            ImageRecord(
                image_path=str(path),
                boxes=boxes,
                labels=np.ones(len(boxes), np.int32),
                difficult=np.zeros(len(boxes), bool),
                image_id=str(i),
            )
        )
    return result


def first_batches(dataset: tf.data.Dataset, count: int) -> list:
    return list(dataset.take(count).as_numpy_iterator())


def test_training_batch_shapes_and_dtypes(records) -> None:
    images, targets = next(iter(training_dataset(records, CONFIG, batch_size=2)))
    num_anchors = generate_anchors(CONFIG).shape[0]
    assert images.shape == (2, 64, 96, 3) and images.dtype == tf.float32
    assert targets["cls_targets"].shape == (2, num_anchors)
    assert targets["cls_targets"].dtype == tf.int32
    assert targets["box_targets"].shape == (2, num_anchors, 4)


def test_training_batches_are_reproducible_for_a_seed(records) -> None:
    first = first_batches(training_dataset(records, CONFIG, 2, seed=5), 3)
    second = first_batches(training_dataset(records, CONFIG, 2, seed=5, num_parallel_calls=1), 3)
    for (img_a, tgt_a), (img_b, tgt_b) in zip(first, second, strict=True):
        np.testing.assert_array_equal(img_a, img_b)
        np.testing.assert_array_equal(tgt_a["cls_targets"], tgt_b["cls_targets"])


def test_start_index_resumes_the_same_batch_sequence(records) -> None:
    full = first_batches(training_dataset(records, CONFIG, 2, seed=1), 4)
    resumed = first_batches(training_dataset(records, CONFIG, 2, seed=1, start_index=4), 2)
    for (img_a, _), (img_b, _) in zip(full[2:], resumed, strict=True):
        np.testing.assert_array_equal(img_a, img_b)


def test_every_image_appears_once_per_epoch() -> None:
    indices = [int(epoch_permutation_index(i, 7, seed=3)) for i in range(14)]
    assert sorted(indices[:7]) == list(range(7))
    assert sorted(indices[7:]) == list(range(7))
    assert indices[:7] != indices[7:]  # a new order for the second epoch


def test_positive_targets_decode_to_boxes_around_the_object(records) -> None:
    """Through decode, read, augment, match and encode, every positive anchor's target decodes
    to a box that bounds the object's pixels of its image (within 2 pixels)."""
    anchors = generate_anchors(CONFIG)
    height, width = CONFIG.image_size
    checked = 0
    for images, targets in first_batches(training_dataset(records, CONFIG, 4, seed=2), 5):
        decoded = decode_boxes(targets["box_targets"], anchors, CONFIG.variances).numpy()
        for image, cls, boxes in zip(images, targets["cls_targets"], decoded, strict=True):
            # Background and expand canvas are grey under any photometric distortion; the
            # object keeps a colour (chroma) even after hue, saturation or channel changes.
            red = image.max(axis=-1) - image.min(axis=-1) > 30
            positives = np.nonzero(cls > 0)[0]
            if not positives.size:
                continue
            ys, xs = np.nonzero(red)
            for box in boxes[positives]:
                x0, y0, x1, y1 = box * [width, height, width, height]
                assert xs.min() >= x0 - 2 and xs.max() + 1 <= x1 + 2
                assert ys.min() >= y0 - 2 and ys.max() + 1 <= y1 + 2
                checked += 1
    assert checked > 0


def test_a_crowd_region_is_never_a_positive(records) -> None:
    crowd_only = ImageRecord(records[0].image_path, records[0].boxes, [1], [True], "crowd",
                             crowd=[True])  # fmt: skip
    [(_, targets)] = first_batches(training_dataset([crowd_only], CONFIG, batch_size=1), 1)
    assert (targets["cls_targets"] > 0).sum() == 0
    [(_, targets)] = first_batches(training_dataset(records[:1], CONFIG, batch_size=1), 1)
    assert (targets["cls_targets"] > 0).sum() > 0  # the same box, not crowd: matched


def test_training_dataset_rejects_empty_records() -> None:
    with pytest.raises(ValueError, match="no images"):
        training_dataset([], CONFIG, 2)
