"""int8 post-training static quantisation of the network with the engine's own tooling:
OpenVINO NNCF (`nncf.quantize`) on the OpenVINO IR.

Calibration images are (n, H, W, 3) uint8 RGB at the model's input size, prepared exactly as
the service prepares a request (the caller resizes them). The decoder is not quantised (it
runs in TF after the network, see `network.py`). The quantised network is stored in the model's
engine cache (`cache.py`) as `openvino-int8/`, with `calibration.json` saying what it was
calibrated on, so `OpenVINOEngine(precision="int8")` - `SSD_ENGINE=openvino` with
`SSD_ENGINE_PRECISION=int8` in the service - finds it like any other converted network.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ssd_core.engines.base import EngineUnavailableError
from ssd_core.engines.cache import ArtifactCache
from ssd_core.engines.conversion import network_openvino, require
from ssd_core.model import SSD

logger = logging.getLogger(__name__)

QUANTIZED_ENGINES = ("openvino",)
CALIBRATION_FILE = "calibration.json"


def quantized_name(engine: str, precision: str) -> str:
    """The cache artifact name of an engine's quantised network, e.g. `openvino-int8`."""
    return f"{engine}-{precision}"


def quantized_artifact(cache: ArtifactCache, engine: str, precision: str) -> Path:
    """The folder of the quantised network, or `EngineUnavailableError` saying how to make it."""
    path = cache.path(quantized_name(engine, precision))
    if engine not in QUANTIZED_ENGINES or not path.exists():
        raise EngineUnavailableError(
            f"no {precision} network of this model for {engine} in {cache.directory}: make it "
            f"with scripts/export.py --model MODEL --quantize {precision} --calibration "
            f"DATASET_SPEC (engines with int8: {', '.join(QUANTIZED_ENGINES)})"
        )
    return path


def quantize_openvino(
    model: SSD,
    cache: ArtifactCache,
    calibration_images: np.ndarray,
    description: Mapping[str, Any] | None = None,
) -> Path:
    """Quantise the model's network to int8 with NNCF and store it in `cache`.

    Args:
        model: the SSD (any mode; its network is quantised).
        cache: the model's engine cache.
        calibration_images: (n, H, W, 3) uint8 RGB at the model input size, n >= 1.
        description: what the images are (e.g. the dataset spec), saved in calibration.json.

    Returns:
        The folder holding `network.xml`, `network.bin` and `calibration.json`; an existing
        quantised network of the same model is replaced.
    """
    ov, nncf = require("openvino"), require("nncf")
    height, width = model.ssd_config.image_size
    images = np.asarray(calibration_images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (height, width, 3):
        raise ValueError(
            f"calibration images must be (n, {height}, {width}, 3) uint8, got "
            f"{images.shape} {images.dtype}"
        )
    if len(images) == 0:
        raise ValueError("quantisation needs at least one calibration image")
    fp32_network = ov.Core().read_model(str(network_openvino(model, cache) / "network.xml"))
    dataset = nncf.Dataset([images[i : i + 1] for i in range(len(images))])
    quantized = nncf.quantize(fp32_network, dataset, subset_size=len(images))
    target = cache.path(quantized_name("openvino", "int8"))
    if target.exists():
        _remove_tree(target)
    record = {"images": len(images), **dict(description or {}), "nncf": nncf.__version__}

    def write(partial: Path) -> None:
        partial.mkdir()
        ov.save_model(quantized, str(partial / "network.xml"), compress_to_fp16=False)
        (partial / CALIBRATION_FILE).write_text(json.dumps(record, indent=2))

    path = cache.get_or_make(target.name, write)
    logger.info(
        "int8 network of %s written to %s (%d calibration images)", model.name, path, len(images)
    )
    return path


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path)
