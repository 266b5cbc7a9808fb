"""The engine interface: run a model's network and decoder on a uint8 batch.

An `Engine` takes (B, H, W, 3) uint8 RGB images already at the model's input size
`config.image_size` and returns the padded outputs of the inference model as NumPy arrays:

- `boxes` (B, K, 4) float32, normalised [xmin, ymin, xmax, ymax];
- `scores` (B, K) float32, sorted by descending score;
- `labels` (B, K) int32, labels 1..C-1;
- `num_detections` (B,) int32, the valid leading rows of each image

(the keys of `ssd_core.fields.DETECTION_OUTPUTS`).

`run` blocks; callers run it off any event loop. Engines are not thread-safe unless they say so:
the service calls one engine from one batcher thread at a time.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from ssd_core.config import SSDConfig

# Numeric precisions an engine can run the network at. "fp32" is the TF reference's; "bf16" and
# "float16" are mixed precision (weights and accumulations as the engine's kernels keep them);
# "int8" is post-training static quantisation (`ssd_core.engines.quantize`).
PRECISIONS = ("fp32", "bf16", "float16", "int8")


class EngineUnavailableError(RuntimeError):
    """The engine cannot run here: an optional package is missing, or an artifact it needs
    (e.g. a quantised network) has not been made. The message says what to install or run."""


class Engine(ABC):
    """Runs one inference-mode SSD.

    Attributes:
        name: the engine's registry name (`"tf"`, `"tf-xla"`, `"onnxruntime"`, `"openvino"`).
        precision: one of `PRECISIONS`.
        config: the model's `SSDConfig`.
    """

    name: ClassVar[str]

    def __init__(self, config: SSDConfig, precision: str) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.config = config
        self.precision = precision

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) in pixels of the images `run` takes."""
        height, width = self.config.image_size
        return int(height), int(width)

    def check_images(self, images: Any) -> np.ndarray:
        """`images` as a C-contiguous (B, H, W, 3) uint8 array; ValueError if it is not one."""
        array = np.ascontiguousarray(images)
        height, width = self.input_size
        if array.dtype != np.uint8 or array.ndim != 4 or array.shape[1:] != (height, width, 3):
            raise ValueError(
                f"images must be (B, {height}, {width}, 3) uint8, got {array.shape} {array.dtype}"
            )
        return array

    @abstractmethod
    def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """(B, H, W, 3) uint8 RGB -> the padded outputs dict (see the module docstring)."""

    def describe(self) -> str:
        """One line for logs: engine, precision, and where the network runs."""
        return f"{self.name} {self.precision}"
