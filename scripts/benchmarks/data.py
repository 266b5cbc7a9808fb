"""Training input pipeline throughput: read, decode, augment, encode targets, batch.

Examples:
    python scripts/benchmark.py data --preset ssd300_voc            # 64 generated 375x500 JPEGs
    python scripts/benchmark.py data --preset ssd7 --rounds 5 --stages
    python scripts/benchmark.py data --quick                        # tiny run for tests

Images: generated shapes scenes (textured, noisy backgrounds: JPEG sizes like photos'), written
as `--height` x `--width` JPEGs (default 375x500, the typical Pascal VOC size), quality 95.

Chains (`--chains`), the same draws and the same batches up to float rounding:
- `crop-first`: what training runs (`ssd_core/data/crop_first.py`);
- `stepwise`: `augment.stepwise_train_transform`, the definition in Caffe's order.

Variants:
- `one-core`: tf.data with a one-thread private pool and no intra-op parallelism;
- `parallel`: the pipeline as `scripts/train.py` runs it (AUTOTUNE parallel map, prefetch).

Every (chain, variant) reports images/s of wall time and images per CPU-second of this process
(`time.process_time`): the per-core rate, which other work on a shared machine barely moves
while it changes the wall clock a lot. Rounds interleave: each round times every (chain,
variant) for `--batches` batches in turn (after one warm-up batch each); the report gives the
median over rounds.

`--stages` instead profiles: the CPU milliseconds per image of each stage of each chain, on one
thread (each stage a `tf.function` over the previous stage's outputs for the same images and
seeds; every call also pays the `tf.function` call cost, reported on its own line).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tensorflow as tf

from ssd_core import SSDConfig, fields
from ssd_core.data import augment, crop_first
from ssd_core.data.pipeline import RecordTable, training_dataset
from ssd_core.data.shapes import write_shapes_dataset
from ssd_core.data.sources import load_dataset
from ssd_core.matching import TargetEncoder

logger = logging.getLogger("benchmark.data")

CHAINS = {"crop-first": crop_first.train_transform, "stepwise": augment.stepwise_train_transform}
VARIANTS = ("one-core", "parallel")
QUICK = {"preset": "ssd7", "images": 8, "batch_size": 4, "batches": 2, "rounds": 1}
QUICK_SIZE = (96, 128)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="ssd300_voc", help="SSDConfig preset name")
    parser.add_argument("--images", type=int, default=64, help="generated shapes images")
    parser.add_argument("--height", type=int, default=375, help="generated image height")
    parser.add_argument("--width", type=int, default=500, help="generated image width")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=4, help="timed batches per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--chains", default="crop-first,stepwise", help=f"of {list(CHAINS)}")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"of {list(VARIANTS)}")
    parser.add_argument(
        "--stages", action="store_true", help="time each stage on one thread instead"
    )
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    parser.add_argument("--quick", action="store_true", help="SSD7, 8 small images, 1 round")


def variant_dataset(
    records: list, config: SSDConfig, batch_size: int, chain: str, variant: str
) -> tf.data.Dataset:
    """The training dataset of `chain`, threaded as `variant` says."""
    parallel = variant == "parallel"
    dataset = training_dataset(
        records,
        config,
        batch_size,
        seed=0,
        num_parallel_calls=tf.data.AUTOTUNE if parallel else None,
        prefetch=parallel,
        transform=CHAINS[chain],
    )
    if not parallel:
        options = tf.data.Options()
        options.threading.private_threadpool_size = 1
        options.threading.max_intra_op_parallelism = 1
        options.autotune.enabled = False
        dataset = dataset.with_options(options)
    return dataset


def time_batches(iterator, batches: int) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) to pull `batches` batches to the host."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(batches):
        _, targets = next(iterator)
        targets[fields.CLS_TARGETS].numpy()  # make sure the batch is materialised on the host
    return time.perf_counter() - wall, time.process_time() - cpu


def measure(records: list, config: SSDConfig, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Interleaved rounds over every (chain, variant); medians of images/s (wall and CPU).

    Every timing gets a fresh iterator, warmed up by one batch and deleted after: a parallel
    pipeline left alive would keep filling its buffers while the next one is timed.
    """
    datasets = {
        (chain, variant): variant_dataset(records, config, args.batch_size, chain, variant)
        for chain in args.chains
        for variant in args.variants
    }
    timings: dict[tuple[str, str], tuple[list[float], list[float]]] = {
        key: ([], []) for key in datasets
    }
    images = args.batches * args.batch_size
    for round_index in range(args.rounds):
        for key, dataset in datasets.items():
            iterator = iter(dataset)
            next(iterator)
            wall, cpu = time_batches(iterator, args.batches)
            del iterator
            timings[key][0].append(wall)
            timings[key][1].append(cpu)
            logger.info(
                "round %d %s %s: %.1f images/s, %.1f images/CPU-s",
                round_index, *key, images / wall, images / cpu,
            )  # fmt: skip
    return [
        {
            "chain": chain,
            "variant": variant,
            "images_per_second": images / statistics.median(walls),
            "images_per_cpu_second": images / statistics.median(cpus),
        }
        for (chain, variant), (walls, cpus) in timings.items()
    ]


def stage_functions(
    config: SSDConfig, encoder: TargetEncoder
) -> dict[str, list[tuple[str, Callable]]]:
    """Per chain, its stages in order: (name, function of the previous stage's outputs)."""
    size, fill = config.image_size, config.pixel_mean

    def draws(image, boxes, labels, seed):
        seeds = augment.split_seed(seed, 5)
        height, width = tf.shape(image)[0], tf.shape(image)[1]
        canvas = augment.draw_expand(seeds[1], height, width)
        boxes = augment.expand_boxes(boxes, canvas, height, width)
        window = augment.choose_crop_window(boxes, seeds[2], canvas.height, canvas.width)
        boxes, labels = augment.boxes_in_window(boxes, labels, window)
        crop = augment.window_pixels(window, canvas.height, canvas.width)
        flip = augment.draw_flip(seeds[3])
        boxes = tf.cond(flip, lambda: augment.flip_boxes(boxes), lambda: boxes)
        return image, boxes, labels, seed, crop, canvas.top, canvas.left, flip

    def part(image, boxes, labels, seed, crop, top, left, flip):
        pixels, padding = crop_first.image_part_of_crop(image, crop, top, left, flip)
        return pixels, boxes, labels, seed, padding

    def distort(pixels, boxes, labels, seed, padding):
        colour = augment.draw_photometric(augment.split_seed(seed, 5)[0])
        return crop_first.distort(pixels, colour), boxes, labels, seed, padding

    def resize(pixels, boxes, labels, seed, padding):
        method = augment.draw_interpolation(augment.split_seed(seed, 5)[4])
        return crop_first.resize_on_fill(pixels, padding, fill, size, method), boxes, labels

    def step(index, function):
        def run(image, boxes, labels, seed):
            return (*function(image, boxes, labels, augment.split_seed(seed, 5)[index]), seed)

        return run

    def photometric(image, boxes, labels, seed):
        return augment.photometric_distort(image, seed), boxes, labels

    def expand(image, boxes, labels, seed):
        return (*augment.random_expand(image, boxes, seed, fill), labels)

    def flip(image, boxes, labels, seed):
        return (*augment.random_flip(image, boxes, seed), labels)

    def stepwise_resize(image, boxes, labels, seed):
        seed = augment.split_seed(seed, 5)[4]
        return augment.random_resize(image, size, seed), boxes, labels

    def encode(image, boxes, labels):
        return image, encoder(boxes, labels)

    return {
        "crop-first": [
            ("window, boxes", draws),
            ("read crop (+ flip)", part),
            ("photometric", distort),
            ("fill + resize", resize),
            ("encode targets", encode),
        ],
        "stepwise": [
            ("photometric", step(0, photometric)),
            ("expand (fill)", step(1, expand)),
            ("crop", step(2, augment.random_crop)),
            ("flip", step(3, flip)),
            ("resize", stepwise_resize),
            ("encode targets", encode),
        ],
    }


def measure_stages(records: list, config: SSDConfig, count: int) -> dict[str, dict[str, float]]:
    """CPU milliseconds per image of every stage of every chain, decode included."""
    table = RecordTable(records)
    encoder = TargetEncoder(config)
    load = tf.function(table.load)
    inputs = [
        (*load(tf.constant(i % table.size, tf.int64)), tf.constant([0, i], tf.int64))
        for i in range(count)
    ]
    results = {"(tf.function call, in each stage)": {"call": _cpu_ms(_identity, inputs)}}
    for chain, stages in stage_functions(config, encoder).items():
        costs = {
            "read + decode": _cpu_ms(
                load, [(tf.constant(i % table.size, tf.int64),) for i in range(count)]
            )
        }
        values = inputs
        for name, function in stages:
            compiled = tf.function(function, reduce_retracing=True)
            costs[name] = _cpu_ms(compiled, values)
            values = [compiled(*value) for value in values]
        results[chain] = costs
    return results


@tf.function(reduce_retracing=True)
def _identity(*values: tf.Tensor) -> tuple[tf.Tensor, ...]:
    return values


def _cpu_ms(function: Callable, inputs: list[tuple]) -> float:
    """CPU milliseconds per call of `function` over `inputs` (after a warm-up pass)."""
    for value in inputs:
        function(*value)
    started = time.process_time()
    for value in inputs:
        tf.nest.map_structure(lambda t: t.numpy(), function(*value))
    return (time.process_time() - started) / len(inputs) * 1e3


def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    config = SSDConfig.preset(args.preset)
    write_shapes_dataset(
        root, num_train=args.images, num_test=0, seed=0, height=args.height, width=args.width
    )
    # Shapes labels 1..5 are valid labels of any preset; only their count matters here.
    records = list(load_dataset(f"voc:{root}", "train").records)
    report = {
        "preset": config.name,
        "image_size": list(config.image_size),
        "jpeg_size": [args.height, args.width],
        "batch_size": args.batch_size,
        "batches": args.batches,
        "rounds": args.rounds,
        "cpu_count": os.cpu_count(),
    }
    if args.stages:
        report["stages_cpu_ms"] = measure_stages(records, config, min(len(records), 32))
    else:
        report["results"] = measure(records, config, args)
    return report


def print_report(report: dict[str, Any]) -> None:
    height, width = report["jpeg_size"]
    what = f"{report['preset']}, {height}x{width} JPEGs"
    results = report.get("results", [])
    if results:
        print(
            f"| chain | variant | images/s | images/CPU-s ({what}, batch {report['batch_size']}) |"
        )
        print("|---|---|---:|---:|")
    by_key = {(r["chain"], r["variant"]): r for r in results}
    for row in results:
        print(
            f"| {row['chain']} | {row['variant']} | {row['images_per_second']:.1f} | "
            f"{row['images_per_cpu_second']:.1f} |"
        )
    for variant in VARIANTS:
        if ("crop-first", variant) in by_key and ("stepwise", variant) in by_key:
            fast, slow = by_key["crop-first", variant], by_key["stepwise", variant]
            ratio = fast["images_per_cpu_second"] / slow["images_per_cpu_second"]
            print(f"crop-first / stepwise, {variant}, per CPU-second: {ratio:.2f}x")
    for chain, costs in report.get("stages_cpu_ms", {}).items():
        print(f"\n| {chain} stage | CPU ms per image ({what}, one thread) |\n|---|---:|")
        for name, value in costs.items():
            print(f"| {name} | {value:.2f} |")
        if len(costs) > 1:
            print(f"| total | {sum(costs.values()):.2f} |")


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
        args.height, args.width = QUICK_SIZE
    if args.stages:  # before TensorFlow starts its thread pools
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    args.chains = [c for c in args.chains.split(",") if c]
    args.variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(args.chains) - set(CHAINS)) + sorted(set(args.variants) - set(VARIANTS))
    if unknown:
        logger.error("unknown chain or variant: %s", ", ".join(unknown))
        return 2
    with tempfile.TemporaryDirectory(prefix="ssd_data_bench_") as tmp:
        report = run(args, Path(tmp))
    print_report(report)
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=2))
    return 0
