"""A served model version: its `ssd_core.inference.Predictor` (model, engine, decoder, resize
policy), the version clients see, and how it is loaded from a file.

The engine (`SSD_ENGINE` / `SSD_PRECISION`, `ssd_core.engines`) runs the network with a fixed
input signature (any batch size, the model's input size, uint8) and the XLA-compiled decoder,
which compiles once per batch size; warm-up runs every padded batch size through the engine so
no request pays for tracing, compiling or kernel autotuning.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service.batcher import NO_LIMITS, BatchLimits
from service.model_file import ModelFileError, check_model_file, load_error
from ssd_core.config import SSDConfig
from ssd_core.decoder_config import DecoderConfig
from ssd_core.engines import StageTimes
from ssd_core.inference import ImageOutputs, Predictor
from ssd_core.input_files import InputFileError, file_digest

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineSetting:
    """Which engine runs a model (`ssd_core.engines.create_engine`'s arguments).

    Attributes:
        engine: `auto`, `tf`, `tf-xla`, `onnxruntime` or `openvino`.
        precision: `auto`, `fp32`, `bf16`, `float16` or `int8`.
        cache_dir: converted networks of a model whose folder is not writable; None: the
            system temp dir's `ssd_engines`.
        batch_sizes: what `auto` times the engines at on a CPU: 1 and the batcher's largest.
    """

    engine: str = "tf"
    precision: str = "auto"
    cache_dir: Path | None = None
    batch_sizes: tuple[int, ...] = (1, 8)


@dataclass(frozen=True)
class ImageResult:
    """One image's outputs of a batch, and the batch's stage times (network, decoder)."""

    outputs: ImageOutputs
    times: StageTimes


class Detector:
    """One model version as the service serves it.

    Args:
        predictor: runs the model (`Predictor.from_model(model)`, or over any engine).
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

    @property
    def engine(self) -> dict[str, str]:
        """What runs the model: `name`, `precision` and a one-line `detail`."""
        engine = self.predictor.engine
        return {"name": engine.name, "precision": engine.precision, "detail": engine.describe()}

    def predict_batch(
        self, images: np.ndarray, limits: BatchLimits = NO_LIMITS
    ) -> list[ImageResult]:
        """(B, H, W, 3) uint8 model inputs -> one unpadded result per image, decoded in the
        graph at the batch's limits. Blocking."""
        outputs = self.predictor.run(images, limits.score_threshold, limits.max_detections)
        times = self.predictor.engine.last_times
        return [ImageResult(image, times) for image in outputs]

    def warm_up(self, batch_sizes: Iterable[int]) -> None:
        """Run one zero batch of every size the batcher pads to, through the engine."""
        self.predictor.warm_up(batch_sizes)


def load_detector(
    model_path: Path, version: str | None = None, engine: EngineSetting = EngineSetting()
) -> Detector:
    """The `.keras` model at `model_path` (either mode) as a `Detector`, through
    `ssd_core.inference.load_inference_model`, run by `engine`.

    Args:
        version: reported to clients; None: the first 12 hex digits of the file's SHA-256,
            which change exactly when the model does.
        engine: the engine and precision; its conversions are cached beside the model file
            (or in `engine.cache_dir`), keyed by the file's hash, so a restart reuses them.
    Raises:
        ModelFileError: one line naming the file and what is wrong with it.
        EngineUnavailableError: the engine's extra or the int8 network is missing (the
            message says what to install or run).
    """
    from ssd_core.engines import create_engine
    from ssd_core.inference import load_inference_model

    logger.info("loading model from %s", model_path)
    check_model_file(model_path)
    try:
        model = load_inference_model(model_path)
    except InputFileError as error:
        raise ModelFileError(str(error)) from error
    except Exception as error:  # Keras raises many types for a bad file; one line names it
        raise load_error(model_path, error) from error
    runner = create_engine(
        model,
        engine.engine,
        engine.precision,
        model_path=model_path,
        cache_dir=engine.cache_dir,
        batch_sizes=engine.batch_sizes,
    )
    logger.info("model %s runs on %s", model_path, runner.describe())
    return Detector(Predictor(runner), version or file_digest(model_path)[:12])


def random_detector() -> Detector:
    """A randomly initialised SSD7 (`SSD_ALLOW_RANDOM_MODEL=1`, experiments only): its
    detections are meaningless."""
    from ssd_core import SSDConfig, build_model

    logger.warning("serving a RANDOMLY INITIALISED SSD7 (SSD_ALLOW_RANDOM_MODEL): meaningless")
    return Detector(Predictor.from_model(build_model(SSDConfig.preset("ssd7"))), "random-init")
