"""Image path: JPEG decode + resize to the model input, full decode vs reduced DCT scale.

Examples:
    python scripts/benchmark.py image                       # 640x480, 1920x1080, 4000x3000
    python scripts/benchmark.py image --inputs 128x208,300x300 --rounds 10
    python scripts/benchmark.py image --quick               # small sizes, 2 rounds (tests)

For each JPEG size and model input size, times on one thread, interleaved round by round:

- `full`: what the service did before: `decode_image` (Pillow, full size, EXIF, RGB) then
  `resize_image` (OpenCV bilinear, the model's stretch);
- `served`: `ssd_core.inference.preprocess.prepare`, what the service and evaluation run now:
  a JPEG at least twice the needed size decoded at a reduced DCT scale (1/2, 1/4, 1/8), then
  the same resize.

The JPEGs are a real photo at each size with a camera's noise (`photos.photo_jpeg`), quality
90. Reported: ms per image (best round and median), the speed-up, and the reduction the
served path used.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from benchmarks.photos import photo, photo_jpeg
from ssd_core.engines.auto import seconds_per_call
from ssd_core.engines.host import describe_host
from ssd_core.inference.images import decode_image, decode_scaled
from ssd_core.inference.preprocess import prepare, resize_image, resized_size

logger = logging.getLogger("benchmark.image")

QUICK = {"sizes": "480x640,900x1200", "inputs": "128x208", "rounds": 2, "seconds": 0.1}
LIMITS = {"max_bytes": 512 * 1024 * 1024, "max_pixels": 400_000_000}
FILL = (0.0, 0.0, 0.0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sizes", default="480x640,1080x1920,3000x4000", help="HxW of the JPEGs, comma-separated"
    )
    parser.add_argument(
        "--inputs",
        default="128x208,300x300",
        help="HxW model inputs (default: the shipped shapes SSD7 and the face detector)",
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=1.0, help="timed seconds per system")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    parser.add_argument("--quick", action="store_true", help="tiny run for tests")


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    logger.info("image benchmark: %s", {**vars(args), "out": str(args.out)})
    cv2.setNumThreads(1)  # one decode worker's cost; the service runs several in parallel
    sizes = [_size(text) for text in str(args.sizes).split(",")]
    inputs = [_size(text) for text in str(args.inputs).split(",")]
    source = photo()[0]
    jpegs = {size: photo_jpeg(*size, args.quality) for size in sizes}
    systems: dict[str, Callable[[bytes, tuple[int, int]], Any]] = {
        "full": lambda data, size: resize_image(
            decode_image(data, **LIMITS), size, "stretch", FILL
        ),
        "served": lambda data, size: prepare(data, size, "stretch", FILL, **LIMITS),
    }
    times: dict[tuple[str, tuple[int, int], tuple[int, int]], list[float]] = {}
    for _ in range(args.rounds):
        for size, data in jpegs.items():
            for model_input in inputs:
                for name, run in systems.items():
                    call = functools.partial(run, data, model_input)
                    call()  # warm-up
                    times.setdefault((name, size, model_input), []).append(
                        seconds_per_call(call, args.seconds)
                    )
    rows = []
    for size, data in jpegs.items():
        for model_input in inputs:
            full, served = times[("full", size, model_input)], times[("served", size, model_input)]
            needed = functools.partial(_stretched, model_input=model_input)
            reduction = decode_scaled(data, **LIMITS, needed=needed).reduction
            rows.append(
                {
                    "jpeg": list(size),
                    "jpeg_bytes": len(data),
                    "model_input": list(model_input),
                    "reduction": reduction,
                    "full_ms": 1000 * min(full),
                    "full_median_ms": 1000 * float(np.median(full)),
                    "served_ms": 1000 * min(served),
                    "served_median_ms": 1000 * float(np.median(served)),
                    "speedup": min(full) / min(served),
                }
            )
    report = {
        "source": source,
        "quality": args.quality,
        "rounds": args.rounds,
        "rows": rows,
        "machine": describe_host(),
    }
    print(table(rows))
    m = report["machine"]
    print(
        f"\n{source}, JPEG quality {args.quality}; one thread; machine: {m['cpu']}, "
        f"{m['logical_cpus']} logical CPUs, load average {m['load_average'][0]:.2f}"
    )
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=2))
    return 0


def _stretched(height: int, width: int, model_input: tuple[int, int]) -> tuple[int, int]:
    return resized_size(height, width, model_input, "stretch")


def _size(text: str) -> tuple[int, int]:
    height, width = (int(v) for v in text.lower().split("x"))
    return height, width


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| JPEG | KiB | model input | reduction | full decode + resize ms (median) "
        "| served ms (median) | speed-up |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['jpeg'][1]}x{r['jpeg'][0]} | {r['jpeg_bytes'] / 1024:.0f} | "
            f"{r['model_input'][1]}x{r['model_input'][0]} | 1/{r['reduction']} | "
            f"{r['full_ms']:.2f} ({r['full_median_ms']:.2f}) | "
            f"{r['served_ms']:.2f} ({r['served_median_ms']:.2f}) | {r['speedup']:.2f}x |"
        )
    return "\n".join(lines)
