"""Training input pipeline throughput in images/s: read, decode, augment, encode, batch.

Examples:
    python scripts/benchmark.py data --preset ssd300_voc            # 64 generated 300x480 images
    python scripts/benchmark.py data --preset ssd300_voc --images 256 --batches 20
    python scripts/benchmark.py data --quick                        # tiny run for tests

Two variants run side by side on the same generated shapes images (JPEG on disk):
- `parallel`: the training pipeline as `scripts/train.py` uses it (AUTOTUNE parallel map,
  prefetch);
- `serial`: the same graph with `num_parallel_calls=None` (one image at a time) and no prefetch;
- `eager-loop`: a plain Python loop calling the same transforms eagerly per image, then
  stacking: what a Python-side (non-tf.data) pipeline gets.
Each variant is warmed up for one batch (tracing), then timed over `--batches` batches.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import tensorflow as tf

from ssd_core import SSDConfig, fields
from ssd_core.data import augment
from ssd_core.data.pipeline import RecordTable, training_dataset
from ssd_core.data.shapes import write_shapes_dataset
from ssd_core.data.sources import load_dataset
from ssd_core.matching import TargetEncoder

logger = logging.getLogger("benchmark.data")

QUICK = {"preset": "ssd7", "images": 8, "batch_size": 4, "batches": 2}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="ssd300_voc", help="SSDConfig preset name")
    parser.add_argument("--images", type=int, default=64, help="generated shapes images")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=8, help="timed batches per variant")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    parser.add_argument("--quick", action="store_true", help="SSD7, 8 images, 2 batches of 4")


def measure(dataset: tf.data.Dataset, batches: int, batch_size: int) -> float:
    """Images/s over `batches` batches after one untimed warm-up batch."""
    iterator = iter(dataset)
    next(iterator)
    started = time.perf_counter()
    for _ in range(batches):
        images, targets = next(iterator)
        targets[fields.CLS_TARGETS].numpy()  # make sure the batch is materialised on the host
    return batches * batch_size / (time.perf_counter() - started)


def measure_eager_loop(records, config: SSDConfig, batches: int, batch_size: int) -> float:
    """Images/s of a Python loop over the same per-image ops, run eagerly (one warm-up batch)."""
    table = RecordTable(records)
    encoder = TargetEncoder(config)

    def batch(start: int) -> None:
        images, cls_targets = [], []
        for index in range(start, start + batch_size):
            image, boxes, labels = table.load(index % table.size)
            seed = tf.constant([0, index], tf.int64)
            image, boxes, labels = augment.train_transform(
                image, boxes, labels, seed, config.image_size, config.pixel_mean
            )
            images.append(image)
            cls_targets.append(encoder(boxes, labels)[0])
        tf.stack(images).numpy(), tf.stack(cls_targets).numpy()

    batch(0)
    started = time.perf_counter()
    for step in range(1, batches + 1):
        batch(step * batch_size)
    return batches * batch_size / (time.perf_counter() - started)


def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    config = SSDConfig.preset(args.preset)
    write_shapes_dataset(root, num_train=args.images, num_test=0, seed=0)  # 300x480 JPEGs
    # Shapes labels 1..5 are valid labels of any preset; only their count matters here.
    records = list(load_dataset(f"voc:{root}", "train").records)
    variants = {
        "parallel": {"num_parallel_calls": tf.data.AUTOTUNE, "prefetch": True},
        "serial": {"num_parallel_calls": None, "prefetch": False},
    }
    results = {}
    for name, options in variants.items():
        dataset = training_dataset(records, config, args.batch_size, seed=0, **options)
        results[name] = measure(dataset, args.batches, args.batch_size)
        logger.info("%s: %.1f images/s", name, results[name])
    results["eager-loop"] = measure_eager_loop(records, config, args.batches, args.batch_size)
    return {
        "preset": config.name,
        "image_size": list(config.image_size),
        "batch_size": args.batch_size,
        "batches": args.batches,
        "cpu_count": os.cpu_count(),
        "images_per_second": results,
        "speedup": results["parallel"] / results["eager-loop"],
    }


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    with tempfile.TemporaryDirectory(prefix="ssd_data_bench_") as tmp:
        report = run(args, Path(tmp))
    print(f"| variant | images/s ({report['preset']}, batch {report['batch_size']}) |")
    print("|---|---|")
    for name, value in report["images_per_second"].items():
        print(f"| {name} | {value:.1f} |")
    print(f"speed-up parallel/eager-loop: {report['speedup']:.2f}x on {report['cpu_count']} CPUs")
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=2))
    return 0
