"""`Predictor`: one model from RGB images of any size to `Detections` in their pixels.

The three steps are separate methods so that a server can run them where it wants (decode and
`preprocess` in a worker pool, `run` in its batcher, `to_detections` per request) and still
run exactly what `predict` runs for evaluation, training-time validation and offline tools.
What runs the batch is an `ssd_core.engines.Engine` (the TF engine of a Keras model by
default; ONNX Runtime or OpenVINO plug in the same way).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ssd_core.config import SSDConfig
from ssd_core.decoder_config import DecoderConfig
from ssd_core.engines.base import Engine
from ssd_core.inference.detections import Detections, ImageOutputs, split_outputs, to_detections
from ssd_core.inference.images import FILE_MAX_BYTES, FILE_MAX_PIXELS
from ssd_core.inference.loading import as_inference
from ssd_core.inference.preprocess import Placement, prepare, prepare_file, resize_image
from ssd_core.model import SSD

logger = logging.getLogger(__name__)


class Predictor:
    """Runs one SSD on images: resize (the config's policy), engine, boxes back to pixels.

    Args:
        engine: runs (B, H, W, 3) uint8 RGB at the model input size and returns the padded
            outputs (`ssd_core.engines.Engine`).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def from_model(cls, model: SSD | Any) -> Predictor:
        """A predictor on the TF engine of `model` (an SSD of either mode, converted with
        `as_inference`; or any Keras model with `ssd_config`, `decoder_config` and the
        inference outputs, e.g. a test's stand-in)."""
        from ssd_core.engines.tf_engine import TFEngine

        if isinstance(model, SSD):
            model = as_inference(model)
        return cls(TFEngine(model))

    @property
    def decoder_config(self) -> DecoderConfig:
        """The decoder the engine's model runs: its threshold and K are the limits of what
        this predictor can return."""
        return self.engine.decoder_config

    @property
    def config(self) -> SSDConfig:
        """The model's `SSDConfig`."""
        return self.engine.config

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) in pixels of the model input."""
        return self.engine.input_size

    def preprocess(self, rgb: np.ndarray) -> tuple[np.ndarray, Placement]:
        """(H, W, 3) uint8 RGB -> (model input (input_h, input_w, 3) uint8, its `Placement`)."""
        config = self.config
        return resize_image(rgb, self.input_size, config.resize, config.pixel_mean)

    def prepare(
        self,
        data: bytes,
        *,
        max_bytes: int = FILE_MAX_BYTES,
        max_pixels: int = FILE_MAX_PIXELS,
        max_decoded_bytes: int | None = None,
    ) -> tuple[np.ndarray, Placement]:
        """Encoded image bytes -> (model input, `Placement` in the original's pixels): the one
        image path of the service and evaluation (`ssd_core.inference.preprocess.prepare`: a
        large JPEG decoded at a reduced DCT scale, then the config's resize policy).

        Raises:
            ImageDecodeError, ImageTooLargeError: see `ssd_core.inference.images`.
        """
        config = self.config
        return prepare(
            data,
            self.input_size,
            config.resize,
            config.pixel_mean,
            max_bytes=max_bytes,
            max_pixels=max_pixels,
            max_decoded_bytes=max_decoded_bytes,
        )

    def prepare_file(self, path: str | Path) -> tuple[np.ndarray, Placement]:
        """`prepare` of a local file (trusted-file limits; errors name the file)."""
        config = self.config
        return prepare_file(path, self.input_size, config.resize, config.pixel_mean)

    def run(
        self,
        pixels: np.ndarray,
        score_threshold: float | None = None,
        max_detections: int | None = None,
    ) -> list[ImageOutputs]:
        """(B, input_h, input_w, 3) uint8 -> one unpadded outputs dict per image (normalised
        boxes). Blocking: run it off any event loop.

        Args:
            score_threshold: decode only scores above this (in the graph); None: the decoder's.
            max_detections: at most this many per image; None: the decoder's.
        Raises:
            ValueError: limits the decoder cannot honour (`DecoderConfig.check_honours`).
        """
        return split_outputs(self.engine.run(pixels, score_threshold, max_detections))

    def to_detections(self, outputs: ImageOutputs, placement: Placement) -> Detections:
        """One image's `run` outputs as `Detections` in its original pixels."""
        return to_detections(outputs, placement, self.config.label_names)

    def predict(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """(H, W, 3) uint8 RGB images of any sizes -> their `Detections`, in one batch."""
        return self.predict_prepared([self.preprocess(rgb) for rgb in images])

    def predict_prepared(
        self, prepared: Sequence[tuple[np.ndarray, Placement]]
    ) -> list[Detections]:
        """(model input, `Placement`) pairs (`prepare`, `preprocess`) -> their `Detections`, in
        one batch."""
        if not prepared:
            return []
        outputs = self.run(np.stack([pixels for pixels, _ in prepared]))
        return [
            self.to_detections(row, placement)
            for row, (_, placement) in zip(outputs, prepared, strict=True)
        ]

    def warm_up(self, batch_sizes: Iterable[int]) -> None:
        """Run one zero batch of every size in `batch_sizes` (a server's padded sizes), so no
        request pays for tracing or compiling."""
        height, width = self.input_size
        sizes = list(batch_sizes)
        for size in sizes:
            self.run(np.zeros((size, height, width, 3), np.uint8))
        logger.info("warmed up %s at batch sizes %s", self.config.name, sizes)
