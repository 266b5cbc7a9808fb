"""A served model version: its `ssd_core.inference.Predictor` (model, engine, decoder, resize
policy), the version clients see, and how it is loaded from a file.

The predictor's engine runs one `tf.function` with a fixed input signature (any batch size, the
model's input size, uint8), traced once; warm-up runs every padded batch size so no request
pays for graph building or kernel autotuning.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from service.model_file import ModelFileError, check_model_file, load_error
from ssd_core.config import SSDConfig
from ssd_core.decoder_config import DecoderConfig
from ssd_core.inference import ImageOutputs, Predictor
from ssd_core.input_files import InputFileError, file_digest

logger = logging.getLogger(__name__)


class Detector:
    """One model version as the service serves it.

    Args:
        predictor: runs the model (`Predictor.from_model(model)`).
        version: reported to clients (e.g. a hash of the model file).
    """

    def __init__(self, predictor: Predictor, version: str) -> None:
        self.predictor = predictor
        self.version = version

    @property
    def config(self) -> SSDConfig:
        return self.predictor.config

    @property
    def name(self) -> str:
        return self.predictor.config.name

    @property
    def decoder_config(self) -> DecoderConfig:
        """The model's decoder: the lowest score threshold and the most detections it returns."""
        return self.predictor.decoder_config

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) in pixels that images are resized to."""
        return self.predictor.input_size

    def predict_batch(self, images: np.ndarray) -> list[ImageOutputs]:
        """(B, H, W, 3) uint8 model inputs -> one unpadded outputs dict per image. Blocking."""
        return self.predictor.run(images)

    def warm_up(self, batch_sizes: Iterable[int]) -> None:
        """Run one zero batch of every size the batcher pads to."""
        self.predictor.warm_up(batch_sizes)


def load_detector(model_path: Path, version: str | None = None) -> Detector:
    """The `.keras` model at `model_path` (either mode) as a `Detector`, through
    `ssd_core.inference.load_inference_model`.

    Args:
        version: reported to clients; None: the first 12 hex digits of the file's SHA-256,
            which change exactly when the model does.
    Raises:
        ModelFileError: one line naming the file and what is wrong with it.
    """
    from ssd_core.inference import load_inference_model

    logger.info("loading model from %s", model_path)
    check_model_file(model_path)
    try:
        model = load_inference_model(model_path)
    except InputFileError as error:
        raise ModelFileError(str(error)) from error
    except Exception as error:  # Keras raises many types for a bad file; one line names it
        raise load_error(model_path, error) from error
    return Detector(Predictor.from_model(model), version or file_digest(model_path)[:12])


def random_detector() -> Detector:
    """A randomly initialised SSD7 (`SSD_ALLOW_RANDOM_MODEL=1`, experiments only): its
    detections are meaningless."""
    from ssd_core import SSDConfig, build_model

    logger.warning("serving a RANDOMLY INITIALISED SSD7 (SSD_ALLOW_RANDOM_MODEL): meaningless")
    return Detector(Predictor.from_model(build_model(SSDConfig.preset("ssd7"))), "random-init")
