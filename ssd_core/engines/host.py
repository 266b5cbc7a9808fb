"""What this host offers an engine: the CPU's name and SIMD features (from /proc/cpuinfo),
its GPUs, and the installed engine packages' versions, for the `auto` rule
(`ssd_core.engines.registry`) and for every benchmark's report of where it ran."""

from __future__ import annotations

import contextlib
import importlib
import os
import platform
from pathlib import Path
from typing import Any

# The flags that decide an engine's speed here: AVX-512 (and its VNNI int8 and BF16 dot
# products), AMX tiles (bf16 / int8 matrix units), AVX2.
REPORTED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def cpu_name() -> str:
    """The CPU's model name (`model name` of /proc/cpuinfo; else the platform's)."""
    for line in _cpuinfo():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_flags() -> set[str]:
    """The CPU's feature flags (the first `flags` line of /proc/cpuinfo); empty if unknown."""
    for line in _cpuinfo():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_has_amx() -> bool:
    """True if the CPU reports AMX bf16 tiles (`amx_bf16`)."""
    return "amx_bf16" in cpu_flags()


def describe_host() -> dict[str, Any]:
    """The CPU (name, logical CPUs, the flags of `REPORTED_FLAGS` it has), the GPUs TensorFlow
    sees, the load average, and the versions of TensorFlow, ONNX Runtime and OpenVINO."""
    import tensorflow as tf

    flags = cpu_flags()
    versions = {"tensorflow": tf.__version__}
    for package in ("onnxruntime", "openvino"):
        with contextlib.suppress(ImportError):
            versions[package] = importlib.import_module(package).__version__
    return {
        "cpu": cpu_name(),
        "logical_cpus": os.cpu_count(),
        "flags": [flag for flag in REPORTED_FLAGS if flag in flags],
        "gpus": [device.name for device in tf.config.list_physical_devices("GPU")],
        "load_average": list(os.getloadavg()),
        **versions,
    }
