"""The engine interface: run a model's network and decoder on a uint8 batch.

An `Engine` takes (B, H, W, 3) uint8 RGB images already at the model's input size
`config.image_size` and returns the padded outputs of the inference model as NumPy arrays:

- `boxes` (B, K, 4) float32, normalised [xmin, ymin, xmax, ymax];
- `scores` (B, K) float32, sorted by descending score;
- `labels` (B, K) int32, labels 1..C-1;
- `num_detections` (B,) int32, the valid leading rows of each image

(the keys of `ssd_core.fields.DETECTION_OUTPUTS`). K is the decoder's `max_detections`.

`run(images, score_threshold, max_detections)` decodes at a stricter threshold and keeps fewer
detections than the model's `DecoderConfig` when asked: the limits reach the decoder
(`ssd_core.postprocess.decode_detections` or its NumPy port), whose cost falls with the
threshold, instead of decoding at the model's floor and filtering after. A server passes the
lowest threshold and the largest count of a batch's requests and filters each request's own
after.

Every engine runs in two stages, the network (what each engine converts and runs its own way)
and the decoder (`ssd_core.engines.network`: the TF reference itself, `TFDecoder`, or for
NumPy outputs `HostDecoder`, the same detections), and records their wall times of the last
`run` in `last_times`. `run` blocks; callers run it off any event loop. Engines are not
thread-safe unless they say so: the service calls one engine from one batcher thread at a time.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ssd_core.config import SSDConfig
from ssd_core.decoder_config import DecoderConfig

# Numeric precisions an engine can run the network at. "fp32" is the TF reference's; "bf16" and
# "float16" are mixed precision (weights and accumulations as the engine's kernels keep them);
# "int8" is post-training static quantisation (`ssd_core.engines.quantize`).
PRECISIONS = ("fp32", "bf16", "float16", "int8")


class EngineUnavailableError(RuntimeError):
    """The engine cannot run here: an optional package is missing, or an artifact it needs
    (e.g. a quantised network) has not been made. The message says what to install or run."""


@dataclass(frozen=True)
class StageTimes:
    """Wall seconds of one `Engine.run`: the network and the decoder."""

    network_s: float = 0.0
    decoding_s: float = 0.0


class Engine(ABC):
    """Runs one inference-mode SSD.

    Attributes:
        name: the engine's registry name (`"tf"`, `"tf-xla"`, `"onnxruntime"`, `"openvino"`).
        precision: one of `PRECISIONS`.
        config: the model's `SSDConfig`.
        decoder_config: the model's decoder: the lowest threshold and the most detections
            `run` can return.
        last_times: the stage times of the last `run`.
    """

    name: ClassVar[str]

    def __init__(self, config: SSDConfig, decoder_config: DecoderConfig, precision: str) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.config = config
        self.decoder_config = decoder_config
        self.precision = precision
        self.last_times = StageTimes()

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

    def limits(
        self, score_threshold: float | None, max_detections: int | None
    ) -> tuple[np.float32, np.int32]:
        """The decoder inputs of a call: its threshold and count, the decoder's own if None.

        Raises:
            ValueError: a threshold below the decoder's or a count above its `max_detections`
                (`DecoderConfig.check_honours`: the model could not honour them).
        """
        self.decoder_config.check_honours(score_threshold, max_detections)
        threshold = (
            self.decoder_config.score_threshold if score_threshold is None else score_threshold
        )
        count = self.decoder_config.max_detections if max_detections is None else max_detections
        return np.float32(threshold), np.int32(count)

    def run(
        self,
        images: Any,
        score_threshold: float | None = None,
        max_detections: int | None = None,
    ) -> dict[str, np.ndarray]:
        """(B, H, W, 3) uint8 RGB -> the padded outputs dict (see the module docstring).

        Args:
            score_threshold: decode only scores above this; None: the decoder's threshold.
            max_detections: keep at most this many per image; None: the decoder's K.
        """
        pixels = self.check_images(images)
        threshold, count = self.limits(score_threshold, max_detections)
        started = time.perf_counter()
        cls_logits, bbox_regression = self.network(pixels)
        between = time.perf_counter()
        outputs = self.decode(cls_logits, bbox_regression, threshold, count)
        self.last_times = StageTimes(between - started, time.perf_counter() - between)
        return outputs

    @abstractmethod
    def network(self, images: np.ndarray) -> tuple[Any, Any]:
        """(B, H, W, 3) uint8 -> raw outputs (cls_logits (B, N, C), bbox_regression (B, N, 4)),
        float32 arrays or tensors."""

    @abstractmethod
    def decode(
        self, cls_logits: Any, bbox_regression: Any, threshold: np.float32, count: np.int32
    ) -> dict[str, np.ndarray]:
        """Raw outputs -> the padded outputs dict at this threshold and count."""

    def describe(self) -> str:
        """One line for logs and /model: engine, precision, and where the network runs."""
        return f"{self.name} {self.precision}"
