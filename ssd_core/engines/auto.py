"""`auto` on a CPU: time the installed engines on this model once per host, keep the fastest.

No fixed order held on the project's own 2-vCPU AVX-512 VM (README, "Inference engines"):
OpenVINO was fastest on the shapes SSD7, but ONNX Runtime and TF traded places by model and
batch size. So the first `create_engine(model, "auto")` of a model file on a host builds every
installed CPU engine that runs the precision (conversions cached as always), runs each on the
model's input size at the batch sizes given (the server's batch 1 and its largest padded
batch), interleaved over a few rounds, and keeps the engine with the least time per image
summed over those batch sizes (best round of each). The choice and its timings are written to
the model's engine cache as `auto-<host key>.json`, keyed by the CPU, its flags, the number of
logical CPUs, the batch sizes, the precision and the engines' package versions, so a restart
on the same host reuses it without measuring, and another host (or an upgrade) measures anew.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ssd_core.atomic_write import atomic_path
from ssd_core.engines.base import Engine, EngineUnavailableError
from ssd_core.engines.cache import ArtifactCache
from ssd_core.engines.host import cpu_flags, cpu_name

logger = logging.getLogger(__name__)

ROUNDS = 3
MIN_SECONDS = 0.2  # per engine, batch size and round: at least this long, at least one call


def host_key(precision: str, batch_sizes: Sequence[int], engines: Sequence[str]) -> str:
    """What a measurement depends on besides the model, as a short hash."""
    import importlib

    versions = {}
    for package in ("tensorflow", "onnxruntime", "openvino"):
        try:
            versions[package] = importlib.import_module(package).__version__
        except ImportError:
            versions[package] = None
    key = {
        "cpu": cpu_name(),
        "flags": sorted(cpu_flags()),
        "logical_cpus": os.cpu_count(),
        "precision": precision,
        "batch_sizes": list(batch_sizes),
        "engines": list(engines),
        "versions": versions,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def choose(
    build: Callable[[str], Engine],
    candidates: Sequence[str],
    cache: ArtifactCache,
    precision: str,
    batch_sizes: Sequence[int],
) -> Engine:
    """The fastest of `candidates` on this host (see the module docstring).

    Args:
        build: engine name -> the engine (raises `EngineUnavailableError` if it cannot run).
        candidates: installed engine names that run `precision`, in the static rule's order
            (the first wins a tie, and is the choice when only one can run).
        cache: the model's engine cache, where the choice is remembered.
        precision: the precision every candidate runs.
        batch_sizes: the batch sizes to time.

    Raises:
        EngineUnavailableError: no candidate could be built (the first one's reason).
    """
    record = cache.path(f"auto-{host_key(precision, batch_sizes, candidates)}.json")
    remembered = _remembered(record, candidates)
    if remembered is not None:
        logger.info("engine auto: %s, measured before on this host (%s)", remembered, record)
        return build(remembered)
    engines: dict[str, Engine] = {}
    reasons: dict[str, str] = {}
    for name in candidates:
        try:
            engines[name] = build(name)
        except EngineUnavailableError as error:
            reasons[name] = str(error)
    if not engines:
        raise EngineUnavailableError(next(iter(reasons.values())))
    if len(engines) == 1:
        return next(iter(engines.values()))
    seconds = measure(engines, batch_sizes)
    chosen = min(engines, key=lambda name: sum(seconds[name].values()))
    table = {name: {str(b): 1000 * s for b, s in times.items()} for name, times in seconds.items()}
    logger.info("engine auto: %s; ms per image by batch size: %s", chosen, table)
    _remember(record, chosen, table, reasons)
    return engines[chosen]


def measure(engines: dict[str, Engine], batch_sizes: Sequence[int]) -> dict[str, dict[int, float]]:
    """Seconds per image of each engine at each batch size: the best of `ROUNDS` interleaved
    rounds, each at least `MIN_SECONDS` of calls on random uint8 images."""
    any_engine = next(iter(engines.values()))
    height, width = any_engine.input_size
    rng = np.random.default_rng(0)
    batches = {b: rng.integers(0, 256, (b, height, width, 3), dtype=np.uint8) for b in batch_sizes}
    for engine in engines.values():
        for batch in batches.values():
            engine.run(batch)  # warm-up: tracing, compiling, first-call allocations
    best = {name: dict.fromkeys(batch_sizes, float("inf")) for name in engines}
    for _ in range(ROUNDS):
        for size, batch in batches.items():
            for name, engine in engines.items():
                call = functools.partial(engine.run, batch)
                per_image = seconds_per_call(call, MIN_SECONDS) / size
                best[name][size] = min(best[name][size], per_image)
    return best


def seconds_per_call(call: Callable[[], Any], seconds: float) -> float:
    """Mean seconds of `call()` over calls repeated for at least `seconds` (at least one)."""
    calls, started = 0, time.perf_counter()
    while calls == 0 or time.perf_counter() - started < seconds:
        call()
        calls += 1
    return (time.perf_counter() - started) / calls


def best_seconds_per_call(call: Callable[[], Any], rounds: int, seconds: float) -> float:
    """The least of `rounds` rounds of `seconds_per_call`."""
    return min(seconds_per_call(call, seconds) for _ in range(rounds))


def _remembered(record: Path, candidates: Sequence[str]) -> str | None:
    try:
        chosen = json.loads(record.read_text())["engine"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return chosen if chosen in candidates else None


def _remember(
    record: Path, chosen: str, table: dict[str, Any], unavailable: dict[str, str]
) -> None:
    content = {
        "engine": chosen,
        "ms_per_image": table,
        "unavailable": unavailable,
        "cpu": cpu_name(),
        "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(record) as partial:
            partial.write_text(json.dumps(content, indent=2))
    except OSError as error:  # a cache that cannot be written only costs a new measurement
        logger.warning("could not remember the auto choice in %s: %s", record, error)
