"""The tf.data input pipeline: read, decode, augment, encode targets, batch, prefetch.

Training batches are a pure function of (seed, element index): element `i` is image
`permutation(seed, epoch)[i % n]` of epoch `i // n`, augmented with the stateless seed
`(seed, i)`. So a run resumed at step `s` rebuilds exactly the batches it would have seen by
starting at element `s * batch_size` (`start_index`); no iterator state needs checkpointing,
and the output does not depend on how many parallel calls run.

Boxes enter as the records' pixel [xmin, ymin, xmax, ymax] and are normalised by the decoded
image size (VOC's 1-based coordinates are taken as they are; the half-pixel difference is
far below what IoU 0.5 matching or evaluation resolves).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

from ssd_core import fields
from ssd_core.config import SSDConfig
from ssd_core.data import crop_first
from ssd_core.data.records import ImageRecord
from ssd_core.matching import TargetEncoder


class RecordTable:
    """Records as constant tensors: paths (n,), the ragged pixel boxes (n, None, 4) and labels
    of the objects training matches (`ImageRecord.training_objects`: no crowd regions)."""

    def __init__(self, records: Sequence[ImageRecord]) -> None:
        if not records:
            raise ValueError("the dataset has no images")
        self.size = len(records)
        self.paths = tf.constant([r.image_path for r in records])
        objects = [r.training_objects() for r in records]  # crowd regions are not targets
        lengths = [len(labels) for _, labels in objects]
        flat_boxes = np.concatenate([b.reshape(-1, 4) for b, _ in objects]).astype(np.float32)
        flat_labels = np.concatenate([lb.reshape(-1) for _, lb in objects]).astype(np.int32)
        self.boxes = tf.RaggedTensor.from_row_lengths(flat_boxes.reshape(-1, 4), lengths)
        self.labels = tf.RaggedTensor.from_row_lengths(flat_labels, lengths)

    def load(self, index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Image `index` decoded: (H, W, 3) uint8, (M, 4) normalised boxes, (M,) labels."""
        data = tf.io.read_file(self.paths[index])
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        image = tf.ensure_shape(image, [None, None, 3])
        size = tf.cast(tf.shape(image)[:2], tf.float32)
        scale = tf.stack([size[1], size[0], size[1], size[0]])
        boxes = tf.clip_by_value(self.boxes[index] / scale, 0.0, 1.0)
        return image, boxes, self.labels[index]


def epoch_permutation_index(index: tf.Tensor, size: int, seed: int) -> tf.Tensor:
    """Record index of training element `index`: a fresh seeded shuffle every epoch."""
    index = tf.cast(index, tf.int64)
    epoch, position = index // size, index % size
    keys = tf.random.stateless_uniform([size], tf.stack([tf.constant(seed, tf.int64), epoch]))
    return tf.cast(tf.argsort(keys)[position], tf.int64)


def training_dataset(
    records: Sequence[ImageRecord],
    config: SSDConfig,
    batch_size: int,
    *,
    seed: int = 0,
    start_index: int = 0,
    encoder: TargetEncoder | None = None,
    num_parallel_calls: int | None = tf.data.AUTOTUNE,
    prefetch: bool = True,
    channel_swap_prob: float = 0.5,
    transform: Callable[..., tuple[tf.Tensor, tf.Tensor, tf.Tensor]] | None = None,
) -> tf.data.Dataset:
    """An endless dataset of augmented training batches.

    `transform` is the augmentation chain, `crop_first.train_transform` by default;
    `augment.stepwise_train_transform` gives the same batches (up to float rounding) slower.

    Yields:
        images: (B, H, W, 3) float32 RGB 0..255 at `config.image_size`.
        targets: {"cls_targets": (B, N) int32, "box_targets": (B, N, 4) float32}, see
            `ssd_core.matching.match_anchors`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    table = RecordTable(records)
    encoder = encoder or TargetEncoder(config)
    transform = transform or crop_first.train_transform
    fill = config.pixel_mean

    def element(index: tf.Tensor) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        image, boxes, labels = table.load(epoch_permutation_index(index, table.size, seed))
        aug_seed = tf.stack([tf.constant(seed, tf.int64), index])
        image, boxes, labels = transform(
            image, boxes, labels, aug_seed, config.image_size, fill, channel_swap_prob
        )
        cls_targets, box_targets = encoder(boxes, labels)
        return image, {fields.CLS_TARGETS: cls_targets, fields.BOX_TARGETS: box_targets}

    dataset = tf.data.Dataset.counter(start=start_index, dtype=tf.int64)
    # deterministic only matters (and only may be given) with parallel calls
    deterministic = True if num_parallel_calls else None
    dataset = dataset.map(
        element, num_parallel_calls=num_parallel_calls, deterministic=deterministic
    )
    dataset = dataset.batch(batch_size, drop_remainder=True)
    return dataset.prefetch(tf.data.AUTOTUNE) if prefetch else dataset
