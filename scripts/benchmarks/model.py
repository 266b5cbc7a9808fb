"""Every installed inference engine side by side: images/s, ratio to TF, fraction of GEMM peak.

Examples:
    python scripts/benchmark.py model --preset ssd300_voc            # random weights
    python scripts/benchmark.py model --model ssd_core/assets/ssd7_shapes.keras
    python scripts/benchmark.py model --model ssd_core/assets/ssd300_res10_face.keras \\
        --engines openvino,onnxruntime --precisions fp32,int8 --rounds 8 --out face.json
    python scripts/benchmark.py model --quick      # SSD7 96x160, batch 1, tf engines (tests)

What is timed is `ssd_core.engines.Engine.run`, what the service's batcher calls: (B, H, W, 3)
uint8 at the model input -> padded detections, the network and the in-graph decoder (at
`--score-threshold`, the service's default 0.3, as the service passes a batch's threshold),
results on the host. Every engine (`--engines`, default: all installed) at every precision
(`--precisions`: fp32, and int8 where the engine has it) and batch size is measured in every
round, the rounds one after the other (`--rounds`, each measurement `--seconds` long), so
all systems see the same machine load; the table gives the best round and the median, the
ratio to the TF engine's fp32 (the reference), the network's and the decoder's share, and the
fraction of the machine's fp32 GEMM peak that the network reaches: FLOPs per image (2 x the
multiply-adds of the model's Conv2D layers, counted from their shapes) x images/s / peak,
where the peak is the best of a large float32 matrix multiply in NumPy and in TensorFlow,
measured by this run. A second table times the decoder alone on the network's outputs, plain
and XLA-compiled, and the host decoder of ONNX Runtime and OpenVINO (`HostDecoder`: NumPy when
few candidates pass, else XLA), at the decoder's own threshold and at `--score-threshold`.

int8 uses the network `scripts/export.py --quantize int8` wrote beside the model; without one,
the benchmark quantises a copy for timing only, into a temporary folder, calibrated on
`--calibration-images` inputs (generated shapes scenes for a shapes model, else random
pixels): its accuracy means nothing, its speed is the int8 network's. A system that fails
(a missing package, an op an engine cannot run) is reported, not fatal. With random weights
(`--preset`) every class scores about 1 / C, under any threshold above that.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ssd_core import SSD, SSDConfig, build_model, generate_anchors, to_inference
from ssd_core.engines import ENGINES, Engine, create_engine, registry
from ssd_core.engines.auto import best_seconds_per_call
from ssd_core.engines.host import describe_host
from ssd_core.engines.network import HostDecoder, TFDecoder, network_model

logger = logging.getLogger("benchmark.model")

QUICK = {
    "preset": "ssd7",
    "image_size": "96x160",
    "batch_sizes": "1",
    "engines": "tf,tf-xla",
    "precisions": "fp32",
    "rounds": 2,
    "seconds": 0.2,
    "gemm_size": 512,
}
REFERENCE = ("tf", "fp32")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="ssd300_voc", help="SSDConfig preset name")
    parser.add_argument("--model", type=Path, help="a saved .keras SSD to time instead of --preset")
    parser.add_argument("--image-size", help="HxW override of the preset input size, e.g. 96x160")
    parser.add_argument("--batch-sizes", default="1,8", help="comma-separated, e.g. 1,8")
    parser.add_argument("--engines", help=f"subset of {','.join(ENGINES)}; default: installed")
    parser.add_argument("--precisions", default="fp32,int8", help="fp32, int8, bf16, float16")
    parser.add_argument("--rounds", type=int, default=5, help="rounds over every system")
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per system")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls per system")
    parser.add_argument("--score-threshold", type=float, default=0.3, help="decoder threshold")
    parser.add_argument("--calibration-images", type=int, default=32)
    parser.add_argument("--gemm-size", type=int, default=2048, help="N of the NxN peak matmul")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny run for tests: SSD7 at 96x160, batch 1, tf and tf-xla, 2 short rounds",
    )


@dataclass
class System:
    """One engine at one precision, and its measurements per batch size."""

    engine: str
    precision: str
    runner: Engine | None = None
    error: str | None = None
    rates: dict[int, list[float]] = field(default_factory=dict)  # images/s per round
    stages: dict[int, list[tuple[float, float]]] = field(default_factory=dict)  # (net, dec) s

    @property
    def name(self) -> str:
        return f"{self.engine} {self.precision}"


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    logger.info("model benchmark: %s", {**vars(args), "out": str(args.out)})
    model = _inference_model(args)
    config = model.ssd_config
    batch_sizes = [int(b) for b in str(args.batch_sizes).split(",")]
    engines = _names(args.engines, registry.available_engines(), ENGINES)
    precisions = _names(args.precisions, ["fp32", "int8"], ("fp32", "int8", "bf16", "float16"))
    inputs = {b: _images(config, b, seed=b) for b in batch_sizes}
    with tempfile.TemporaryDirectory() as scratch:
        systems = [
            _system(model, args, engine, precision, Path(scratch))
            for precision in precisions
            for engine in engines
            if precision in registry.ENGINE_PRECISIONS[engine]
        ]
        _measure(systems, inputs, args)
        decoder_rows = _decoder_rows(model, inputs, args)
    peak = gemm_peak(args.gemm_size)
    flops = conv_flops(network_model(model))
    report = {
        "model_file": None if args.model is None else str(args.model),
        "preset": args.preset if args.model is None else None,
        "config": config.name,
        "image_size": list(config.image_size),
        "parameters": model.count_params(),
        "anchors": len(generate_anchors(config)),
        "flops_per_image": flops,
        "gemm_peak_flops": peak,
        "decoder": model.decoder_config.to_dict(),
        "score_threshold": args.score_threshold,
        "rounds": args.rounds,
        "seconds": args.seconds,
        "machine": describe_host(),
        "results": _rows(systems, batch_sizes, flops, peak),
        "decoder_results": decoder_rows,
    }
    _print(report)
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=2))
        logger.info("wrote %s", args.out)
    return 0


def _names(text: str | None, default: list[str], known: tuple[str, ...]) -> list[str]:
    names = default if not text else [n.strip() for n in text.split(",") if n.strip()]
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise SystemExit(f"unknown name(s) {unknown}; choose from {', '.join(known)}")
    return names


def _inference_model(args: argparse.Namespace) -> SSD:
    """The inference-mode model to time: `--model`'s weights and decoder, or `--preset`'s."""
    if args.model is None:
        overrides = {}
        if args.image_size:
            overrides["image_size"] = tuple(int(v) for v in args.image_size.lower().split("x"))
        return build_model(SSDConfig.preset(args.preset, **overrides), mode="inference")
    loaded = keras.saving.load_model(args.model)
    if not isinstance(loaded, SSD):
        raise SystemExit(f"--model {args.model} is not an ssd_core SSD model")
    return loaded if loaded.mode == "inference" else to_inference(loaded)


def _images(config: SSDConfig, count: int, seed: int) -> np.ndarray:
    """`count` model inputs: generated scenes for a shapes model (so it detects), else noise."""
    height, width = (int(v) for v in config.image_size)
    rng = np.random.default_rng(seed)
    if config.name.startswith("ssd7_shapes"):
        from ssd_core.data.shapes import render_scene

        return np.stack([render_scene(rng, height, width).image for _ in range(count)])
    return rng.integers(0, 256, (count, height, width, 3), dtype=np.uint8)


def _system(
    model: SSD, args: argparse.Namespace, engine: str, precision: str, scratch: Path
) -> System:
    system = System(engine, precision)
    try:
        if precision == "int8":
            system.runner = _int8_engine(model, args, engine, scratch)
        else:
            system.runner = create_engine(model, engine, precision, model_path=args.model)
    except Exception as error:  # a system that cannot run is a result, not a crash
        logger.warning("%s: %s", system.name, error)
        system.error = f"{type(error).__name__}: {error}"
    return system


def _int8_engine(model: SSD, args: argparse.Namespace, engine: str, scratch: Path) -> Engine:
    """The int8 network export.py wrote beside the model, else one quantised for timing."""
    from ssd_core.engines import ArtifactCache, EngineUnavailableError
    from ssd_core.engines.quantize import quantize

    if args.model is not None:
        try:
            return create_engine(model, engine, "int8", model_path=args.model)
        except EngineUnavailableError:
            logger.info("no int8 network of %s beside the model: quantising one", engine)
    calibration = _images(model.ssd_config, args.calibration_images, seed=1000)
    quantize(model, ArtifactCache(model, None, scratch), engine, calibration, {"for": "timing"})
    return create_engine(model, engine, "int8", cache_dir=scratch)


def _measure(
    systems: list[System], inputs: dict[int, np.ndarray], args: argparse.Namespace
) -> None:
    """Every system at every batch size in every round, interleaved."""
    live = [s for s in systems if s.runner is not None]
    for system in live:
        for images in inputs.values():
            try:
                for _ in range(args.warmup):
                    system.runner.run(images, args.score_threshold)  # type: ignore[union-attr]
            except Exception as error:
                logger.warning("%s: %s", system.name, error)
                system.error = f"{type(error).__name__}: {error}"
    live = [s for s in live if s.error is None]
    for round_index in range(args.rounds):
        for batch, images in inputs.items():
            for system in live:
                rate, stages = _time_runs(system.runner, images, args)  # type: ignore[arg-type]
                system.rates.setdefault(batch, []).append(rate)
                system.stages.setdefault(batch, []).append(stages)
        logger.info("round %d of %d done", round_index + 1, args.rounds)


def _time_runs(
    runner: Engine, images: np.ndarray, args: argparse.Namespace
) -> tuple[float, tuple[float, float]]:
    """(images/s, (network s, decoder s) per call) over at least `--seconds` of calls."""
    calls, network, decoding = 0, 0.0, 0.0
    started = time.perf_counter()
    while True:
        runner.run(images, args.score_threshold)
        calls += 1
        network += runner.last_times.network_s
        decoding += runner.last_times.decoding_s
        elapsed = time.perf_counter() - started
        if elapsed >= args.seconds:
            return calls * len(images) / elapsed, (network / calls, decoding / calls)


def _decoder_rows(
    model: SSD, inputs: dict[int, np.ndarray], args: argparse.Namespace
) -> list[dict[str, Any]]:
    """The decoder alone on the TF network's outputs: plain vs XLA vs the host decoder, floor
    vs the threshold."""
    from ssd_core.engines.tf_engine import TFEngine

    network = TFEngine(model)
    decoders: dict[str, Any] = {
        name: TFDecoder(model.ssd_config, model.decoder_config, jit)
        for name, jit in (("plain", False), ("xla", True))
    }
    decoders["host"] = HostDecoder(model.ssd_config, model.decoder_config)
    thresholds = sorted({model.decoder_config.score_threshold, args.score_threshold})
    count = model.decoder_config.max_detections
    rows = []
    for batch, images in inputs.items():
        logits, deltas = (np.asarray(t) for t in network.network(images))
        for threshold in thresholds:
            times = {}
            for name, decoder in decoders.items():
                decoder(logits, deltas, threshold, count)  # trace / compile
                times[name] = best_seconds_per_call(
                    functools.partial(decoder, logits, deltas, threshold, count),
                    rounds=max(args.rounds, 2),
                    seconds=max(args.seconds / 4, 0.05),
                )
            rows.append(
                {
                    "batch_size": batch,
                    "score_threshold": threshold,
                    "plain_ms": 1000 * times["plain"],
                    "xla_ms": 1000 * times["xla"],
                    "host_ms": 1000 * times["host"],
                    "host_path": decoders["host"].last_path,
                }
            )
    return rows


def conv_flops(model: keras.Model) -> int:
    """FLOPs of one image through the model's Conv2D layers: 2 x output pixels x output
    channels x kernel height x kernel width x input channels per group (the multiply-adds;
    normalisation, activations and pooling, a few percent, are not counted)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, out_h, out_w, out_c = layer.output.shape
            kernel_h, kernel_w, in_per_group, _ = layer.kernel.shape
            total += 2 * out_h * out_w * out_c * kernel_h * kernel_w * in_per_group
    return int(total)


def gemm_peak(size: int) -> float:
    """The best float32 FLOP/s of an NxN matrix multiply on this machine, NumPy or TF."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    ta, tb = tf.constant(a), tf.constant(b)
    matmul = tf.function(lambda x, y: tf.matmul(x, y))
    runs = {"numpy": lambda: a @ b, "tensorflow": lambda: matmul(ta, tb).numpy()}
    best = 0.0
    for run in runs.values():
        run()
        seconds = best_seconds_per_call(run, rounds=5, seconds=0.3)
        best = max(best, 2.0 * size**3 / seconds)
    return best


def _rows(
    systems: list[System], batch_sizes: list[int], flops: int, peak: float
) -> list[dict[str, Any]]:
    reference = next((s for s in systems if (s.engine, s.precision) == REFERENCE), None)
    rows = []
    for system in systems:
        for batch in batch_sizes:
            row: dict[str, Any] = {
                "engine": system.engine,
                "precision": system.precision,
                "batch_size": batch,
                "error": system.error,
            }
            rates = system.rates.get(batch)
            if rates:
                net, dec = system.stages[batch][int(np.argmax(rates))]
                best = max(rates)
                ref = max(reference.rates[batch]) if reference and reference.rates else None
                row.update(
                    images_per_second=best,
                    median_images_per_second=float(np.median(rates)),
                    vs_tf_fp32=best / ref if ref else None,
                    network_ms=1000 * net,
                    decoding_ms=1000 * dec,
                    decoding_share=dec / net if net else None,
                    # The network's own rate: the decoder's time is not GEMM work.
                    fraction_of_peak=flops * batch / net / peak if net and peak else None,
                )
            rows.append(row)
    return rows


def _print(report: dict[str, Any]) -> None:
    m = report["machine"]
    height, width = report["image_size"]
    print(
        f"{report['config']} {height}x{width}: {report['parameters']:,} parameters, "
        f"{report['anchors']} anchors, {report['flops_per_image'] / 1e9:.3f} GFLOP per image "
        f"(conv layers); decoder {report['decoder']['method']} at score > "
        f"{report['score_threshold']}\nmachine: {m['cpu']}, {m['logical_cpus']} logical CPUs, "
        f"{' '.join(m['flags'])}; fp32 GEMM peak measured {report['gemm_peak_flops'] / 1e9:.0f} "
        f"GFLOP/s; load average {m['load_average'][0]:.2f}; {report['rounds']} rounds\n"
    )
    print(markdown_table(report["results"]))
    print()
    print(decoder_table(report["decoder_results"]))


def markdown_table(results: list[dict[str, Any]]) -> str:
    """One row per (engine, precision, batch size)."""
    lines = [
        "| engine | precision | batch | images/s (best) | median | vs tf fp32 | network ms "
        "| decoding ms | decoding / network | network: fraction of fp32 peak |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        head = f"| {r['engine']} | {r['precision']} | {r['batch_size']} |"
        if "images_per_second" not in r:
            lines.append(f"{head} failed: {(r['error'] or '')[:70]} | | | | | | |")
            continue
        ratio = f"{r['vs_tf_fp32']:.2f}x" if r["vs_tf_fp32"] else "-"
        lines.append(
            f"{head} {r['images_per_second']:.1f} | {r['median_images_per_second']:.1f} | "
            f"{ratio} | {r['network_ms']:.2f} | {r['decoding_ms']:.2f} | "
            f"{r['decoding_share']:.0%} | {r['fraction_of_peak']:.2f} |"
        )
    return "\n".join(lines)


def decoder_table(rows: list[dict[str, Any]]) -> str:
    """The decoder alone: plain tf.function vs XLA vs the host decoder (and the path it took),
    ms per batch."""
    lines = [
        "| decoder alone: batch | score > | tf.function ms | XLA ms | XLA speed-up | host ms |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['batch_size']} | {r['score_threshold']:g} | {r['plain_ms']:.2f} | "
            f"{r['xla_ms']:.2f} | {r['plain_ms'] / r['xla_ms']:.2f}x | "
            f"{r['host_ms']:.2f} ({r['host_path']}) |"
        )
    return "\n".join(lines)
