"""Model forward throughput in images/s: raw network and with decoding; eager, tf.function, XLA.

Examples:
    python scripts/benchmark.py model --preset ssd300_voc --batch-sizes 1,8
    python scripts/benchmark.py model --preset ssd512_voc --batch-sizes 1 --iterations 5 \\
        --out ssd512.json
    python scripts/benchmark.py model --quick      # SSD7 96x160, batch 1, 2 iterations (tests)
    # a saved model (trained weights, its own decoder settings), e.g. the embedded face detector
    python scripts/benchmark.py model --model ssd_core/assets/ssd300_res10_face.keras \\
        --batch-sizes 1,8

Every measurement runs `--warmup` untimed calls (tracing and XLA compilation happen there), then
`--iterations` timed calls on the same random uint8 batch; a call ends when its outputs are on
the host. A mode that fails (e.g. an op XLA cannot compile) is reported, not fatal. The report
names the model's parameter and anchor counts. With random weights (`--preset`) every class
score is about 1 / C, so the Caffe decoder runs its worst case; `--model` times real weights.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ssd_core import SSD, SSDConfig, build_model, generate_anchors, to_inference
from ssd_core.model import copy_model

logger = logging.getLogger("benchmark.model")

MODES = ("eager", "function", "xla")
MODELS = ("raw", "decoded")
QUICK = {"preset": "ssd7", "image_size": "96x160", "batch_sizes": "1", "iterations": 2, "warmup": 1}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="ssd300_voc", help="SSDConfig preset name")
    parser.add_argument("--model", type=Path, help="a saved .keras SSD to time instead of --preset")
    parser.add_argument("--image-size", help="HxW override of the preset input size, e.g. 96x160")
    parser.add_argument("--batch-sizes", default="1,8", help="comma-separated, e.g. 1,8")
    parser.add_argument("--iterations", type=int, default=10, help="timed calls per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls before timing")
    parser.add_argument("--modes", default=",".join(MODES), help=f"subset of {','.join(MODES)}")
    parser.add_argument("--decoder", default="caffe", choices=("caffe", "fast"))
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny run for tests: SSD7 at 96x160, batch 1, 2 iterations, 1 warm-up",
    )


def _forward(model: keras.Model, mode: str) -> Callable[[tf.Tensor], Any]:
    """The model's forward pass in one execution mode."""

    def call(images: tf.Tensor) -> Any:
        return model(images, training=False)

    if mode == "eager":
        return call
    return tf.function(call, jit_compile=(mode == "xla"))


def _time_forward(
    forward: Callable[[tf.Tensor], Any], images: tf.Tensor, iterations: int, warmup: int
) -> float:
    """Seconds per call, averaged over `iterations` after `warmup` untimed calls."""
    for _ in range(warmup):
        tf.nest.map_structure(lambda t: t.numpy(), forward(images))
    start = time.perf_counter()
    for _ in range(iterations):
        tf.nest.map_structure(lambda t: t.numpy(), forward(images))
    return (time.perf_counter() - start) / iterations


def _measure(
    model: keras.Model, name: str, mode: str, batch: int, args: argparse.Namespace
) -> dict[str, Any]:
    height, width = model.ssd_config.image_size
    rng = np.random.default_rng(batch)
    images = tf.constant(rng.integers(0, 256, size=(batch, height, width, 3), dtype=np.uint8))
    row: dict[str, Any] = {"model": name, "mode": mode, "batch_size": batch}
    try:
        seconds = _time_forward(_forward(model, mode), images, args.iterations, args.warmup)
    except Exception as error:  # a failing mode is a result to report, not a crash
        logger.warning("%s %s batch %d failed: %s", name, mode, batch, error)
        return {**row, "ms_per_batch": None, "images_per_second": None, "error": repr(error)}
    return {
        **row,
        "ms_per_batch": 1000.0 * seconds,
        "images_per_second": batch / seconds,
        "error": None,
    }


def _raw_model(args: argparse.Namespace) -> SSD:
    """The training-mode (raw outputs) model to time: `--model`'s weights, or `--preset`'s."""
    if args.model is None:
        overrides = {}
        if args.image_size:
            overrides["image_size"] = tuple(int(v) for v in args.image_size.lower().split("x"))
        return build_model(SSDConfig.preset(args.preset, **overrides))
    loaded = keras.saving.load_model(args.model)
    if not isinstance(loaded, SSD):
        raise SystemExit(f"--model {args.model} is not an ssd_core SSD model")
    return loaded if loaded.mode == "training" else copy_model(loaded, "training")


def markdown_table(results: list[dict[str, Any]]) -> str:
    """The results as a markdown table, one row per (model, mode, batch size)."""
    lines = [
        "| model | mode | batch | ms / batch | images / s |",
        "|---|---|---:|---:|---:|",
    ]
    for r in results:
        if r["error"] is None:
            timing = f"{r['ms_per_batch']:.1f} | {r['images_per_second']:.2f}"
        else:
            timing = f"failed | {r['error'][:60]}"
        lines.append(f"| {r['model']} | {r['mode']} | {r['batch_size']} | {timing} |")
    return "\n".join(lines)


def _environment() -> dict[str, Any]:
    return {
        "tensorflow": tf.__version__,
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "gpus": [device.name for device in tf.config.list_physical_devices("GPU")],
    }


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        raise SystemExit(f"--modes: unknown mode(s) {unknown}; choose from {MODES}")
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    logger.info("model benchmark: %s", {**vars(args), "out": str(args.out)})

    raw = _raw_model(args)
    config = raw.ssd_config
    decoder = raw.decoder_config.replace(method=args.decoder)
    models = {"raw": raw, "decoded": to_inference(raw, decoder)}
    results = [
        _measure(models[name], name, mode, batch, args)
        for name in MODELS
        for mode in modes
        for batch in batch_sizes
    ]
    report = {
        "preset": args.preset if args.model is None else None,
        "model_file": None if args.model is None else str(args.model),
        "config": config.name,
        "parameters": raw.count_params(),
        "anchors": len(generate_anchors(config)),
        "image_size": list(config.image_size),
        "decoder": args.decoder,
        "iterations": args.iterations,
        "warmup": args.warmup,
        "environment": _environment(),
        "results": results,
    }
    height, width = config.image_size
    print(
        f"{config.name} {height}x{width}, {report['parameters']:,} parameters, "
        f"{report['anchors']} anchors, decoder {args.decoder}, {args.iterations} iterations"
    )
    print(markdown_table(results))
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=2))
        logger.info("wrote %s", args.out)
    return 0
