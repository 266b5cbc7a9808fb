"""Engines by name, which ones this host can run, and the `auto` rule.

Names: `tf`, `tf-xla`, `onnxruntime`, `openvino`, and `auto`:

- on a GPU: `tf-xla`, in float16 mixed precision where the GPU has tensor cores (compute
  capability >= 7.0), else fp32 (not measured: this project's machines have no GPU);
- on a CPU: `create_engine` times the installed CPU engines (`openvino`, `onnxruntime`, `tf`)
  on the model once per host and keeps the fastest (`ssd_core.engines.auto`; no fixed order
  held on the project's 2-vCPU AVX-512 VM, README "Inference engines"); `resolve` names the
  first installed of that list, the choice when only one runs and what a tie goes to. The
  precision is fp32, bf16 only for OpenVINO on a CPU with AMX (`amx_bf16`): without AMX,
  bf16 ran slower than fp32 in TF and OpenVINO alike on AVX512_BF16.

A precision given explicitly (not "auto") always wins over the rule.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ssd_core.engines.base import PRECISIONS, Engine, EngineUnavailableError
from ssd_core.engines.cache import ArtifactCache
from ssd_core.engines.host import cpu_has_amx
from ssd_core.model import SSD

logger = logging.getLogger(__name__)

ENGINES = ("tf", "tf-xla", "onnxruntime", "openvino")
ENGINE_CHOICES = ("auto", *ENGINES)
# The optional packages each engine needs (all of them: conversion + runtime).
REQUIREMENTS = {
    "tf": (),
    "tf-xla": (),
    "onnxruntime": ("tf2onnx", "onnxruntime"),
    "openvino": ("tf2onnx", "openvino"),
}
EXTRAS = {"onnxruntime": "onnx", "openvino": "openvino"}
CPU_PREFERENCE = ("openvino", "onnxruntime", "tf")
# The precisions each engine runs (`ssd_core.engines.PRECISIONS`).
ENGINE_PRECISIONS = {
    "tf": ("fp32", "float16", "bf16"),
    "tf-xla": ("fp32", "float16", "bf16"),
    "onnxruntime": ("fp32", "int8"),
    "openvino": ("fp32", "bf16", "int8"),
}
PRECISION_CHOICES = ("auto", *PRECISIONS)


@dataclass(frozen=True)
class EngineChoice:
    """A resolved engine name and precision."""

    engine: str
    precision: str


def missing_packages(engine: str) -> list[str]:
    """The optional packages `engine` needs that are not installed (empty: it can run)."""
    if engine not in REQUIREMENTS:
        raise ValueError(f"engine must be one of {ENGINE_CHOICES}, got {engine!r}")
    return [name for name in REQUIREMENTS[engine] if importlib.util.find_spec(name) is None]


def check_available(engine: str) -> None:
    """Raise `EngineUnavailableError` (naming the extra to install) unless `engine` can run here."""
    if engine == "auto":
        return
    missing = missing_packages(engine)
    if missing:
        extra = EXTRAS[engine]
        raise EngineUnavailableError(
            f"engine {engine!r} needs {', '.join(missing)}, not installed: "
            f"pip install -e '.[{extra}]'"
        )


def available_engines() -> list[str]:
    """The engines whose packages are installed, in `ENGINES` order."""
    return [engine for engine in ENGINES if not missing_packages(engine)]


def check_choice(engine: str, precision: str) -> None:
    """Raise ValueError unless `engine` is one of `ENGINE_CHOICES`, `precision` one of
    `PRECISION_CHOICES`, and a named engine runs a named precision."""
    if engine not in ENGINE_CHOICES:
        raise ValueError(f"engine must be one of {', '.join(ENGINE_CHOICES)}, got {engine!r}")
    if precision not in PRECISION_CHOICES:
        raise ValueError(
            f"precision must be one of {', '.join(PRECISION_CHOICES)}, got {precision!r}"
        )
    runs = ENGINE_PRECISIONS.get(engine, PRECISIONS)
    if precision != "auto" and precision not in runs:
        raise ValueError(f"engine {engine!r} runs precisions {', '.join(runs)}, not {precision!r}")


def resolve(engine: str, precision: str = "auto") -> EngineChoice:
    """The concrete engine and precision of a requested (engine, precision).

    `precision="auto"` is fp32 for a named engine and the rule of the module docstring for
    `engine="auto"`; `engine="auto"` with a named precision is the first installed engine of
    the rule that runs it.

    Raises:
        ValueError: an unknown engine or precision, or a pair that cannot run (`check_choice`).
        EngineUnavailableError: `engine="auto"` with a precision no installed engine runs.
    """
    check_choice(engine, precision)
    if engine != "auto":
        return EngineChoice(engine, "fp32" if precision == "auto" else precision)
    import tensorflow as tf

    from ssd_core.engines.tf_engine import gpu_has_tensor_cores

    if tf.config.list_physical_devices("GPU") and precision in ("auto", "fp32", "float16", "bf16"):
        automatic = "float16" if gpu_has_tensor_cores() else "fp32"
        return EngineChoice("tf-xla", automatic if precision == "auto" else precision)
    installed = available_engines()
    runs = [
        name
        for name in CPU_PREFERENCE
        if name in installed and (precision == "auto" or precision in ENGINE_PRECISIONS[name])
    ]
    if not runs:
        extras = sorted(
            {
                EXTRAS[name]
                for name in CPU_PREFERENCE
                if name in EXTRAS and precision in ENGINE_PRECISIONS[name]
            }
        )
        raise EngineUnavailableError(
            f"no installed engine runs {precision}: install the "
            f"{' or '.join(repr(extra) for extra in extras)} extra"
        )
    chosen = runs[0]
    if precision != "auto":
        return EngineChoice(chosen, precision)
    bf16 = cpu_has_amx() and chosen == "openvino"
    return EngineChoice(chosen, "bf16" if bf16 else "fp32")


def create_engine(
    model: SSD,
    engine: str = "tf",
    precision: str = "auto",
    *,
    model_path: str | Path | None = None,
    cache_dir: str | Path | None = None,
    batch_sizes: Sequence[int] = (1, 8),
) -> Engine:
    """The engine that runs the inference-mode `model`.

    Args:
        model: an inference-mode SSD (`ssd_core.to_inference` makes one).
        engine: one of `ENGINE_CHOICES`; "auto" on a CPU measures (`ssd_core.engines.auto`).
        precision: "auto" (see `resolve`) or one of `ssd_core.engines.PRECISIONS`.
        model_path: the `.keras` file `model` came from: the cache key of converted networks.
        cache_dir: where converted networks go when the model's folder is not writable.
        batch_sizes: the batch sizes "auto" times the engines at (a server's 1 and largest).

    Raises:
        EngineUnavailableError: the engine's packages or its quantised network are missing.
        ValueError: an unknown engine or a precision the engine does not run.
    """
    if not isinstance(model, SSD) or model.mode != "inference":
        raise ValueError("engines run an inference-mode ssd_core SSD (see to_inference)")
    choice = resolve(engine, precision)
    if choice.engine in ("tf", "tf-xla") and engine != "auto":
        return _build(model, choice, None)
    cache = ArtifactCache(model, model_path, Path(cache_dir) if cache_dir else None)
    if engine == "auto" and choice.engine != "tf-xla":  # a CPU: measure the installed engines
        from ssd_core.engines.auto import choose

        candidates = [
            name
            for name in CPU_PREFERENCE
            if not missing_packages(name)
            and (precision == "auto" or precision in ENGINE_PRECISIONS[name])
        ]
        return choose(
            lambda name: _build(model, resolve(name, _auto_precision(name, precision)), cache),
            candidates,
            cache,
            precision,
            batch_sizes,
        )
    return _build(model, choice, cache)


def _auto_precision(engine: str, precision: str) -> str:
    """The precision "auto" gives `engine` on a CPU (see the module docstring)."""
    if precision != "auto":
        return precision
    return "bf16" if engine == "openvino" and cpu_has_amx() else "fp32"


def _build(model: SSD, choice: EngineChoice, cache: ArtifactCache | None) -> Engine:
    """The engine of a resolved choice; `cache` may be None for the TF engines only."""
    check_available(choice.engine)
    logger.info("engine %s %s", choice.engine, choice.precision)
    if choice.engine in ("tf", "tf-xla"):
        from ssd_core.engines.tf_engine import TFEngine, XLAEngine

        cls = TFEngine if choice.engine == "tf" else XLAEngine
        return cls(model, choice.precision)
    assert cache is not None, "converted engines need the model's cache"
    if choice.engine == "onnxruntime":
        from ssd_core.engines.onnxruntime_engine import OnnxRuntimeEngine

        return OnnxRuntimeEngine(model, cache, choice.precision)
    from ssd_core.engines.openvino_engine import OpenVINOEngine

    return OpenVINOEngine(model, cache, choice.precision)
