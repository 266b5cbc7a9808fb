"""int8 post-training static quantisation of the network with each engine's own tooling:
OpenVINO NNCF (`nncf.quantize` on the OpenVINO IR) and ONNX Runtime
(`onnxruntime.quantization.quantize_static` on the tf2onnx ONNX, QDQ format).

Calibration images are (n, H, W, 3) uint8 RGB at the model's input size, prepared as the
service prepares a request (`ssd_core.engines.calibration` reads them from a dataset). Only the
network is quantised; the decoder runs after it, in fp32 (`network.py`). The result is stored in
the model's engine cache (`cache.py`) as `openvino-int8/` (`network.xml` + `.bin`) or
`onnxruntime-int8/` (`network.onnx`), each with `calibration.json` saying what it was
calibrated on, so `create_engine(model, "openvino" | "onnxruntime", "int8")` finds it like any
other converted network.

Both quantise weights per output channel (int8, symmetric) and activations per tensor (uint8
for ONNX Runtime, the u8 x s8 products of VNNI; NNCF's default for CPU), with min/max ranges
from the calibration images; NNCF adds its fast bias correction. The accuracy this keeps is
measured, not assumed: `tests/ssd_core/engines/test_quantize.py` and README "int8".
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ssd_core.engines.base import EngineUnavailableError
from ssd_core.engines.cache import ArtifactCache
from ssd_core.engines.conversion import network_onnx, network_openvino, require
from ssd_core.model import SSD

logger = logging.getLogger(__name__)

QUANTIZED_ENGINES = ("openvino", "onnxruntime")
CALIBRATION_FILE = "calibration.json"
# The network file inside each engine's quantised artifact folder.
NETWORK_FILES = {"openvino": "network.xml", "onnxruntime": "network.onnx"}


def quantized_name(engine: str, precision: str) -> str:
    """The cache artifact name of an engine's quantised network, e.g. `openvino-int8`."""
    return f"{engine}-{precision}"


def quantized_artifact(cache: ArtifactCache, engine: str, precision: str) -> Path:
    """The network file of the quantised network (inside its artifact folder), or
    `EngineUnavailableError` saying how to make it."""
    path = cache.path(quantized_name(engine, precision))
    if engine not in QUANTIZED_ENGINES or not path.exists():
        raise EngineUnavailableError(
            f"no {precision} network of this model for {engine} in {cache.directory}: make it "
            f"with scripts/export.py --model MODEL --quantize {precision} --engine {engine} "
            f"--calibration DATASET_SPEC (engines with int8: {', '.join(QUANTIZED_ENGINES)})"
        )
    return path / NETWORK_FILES[engine]


def check_calibration_images(model: SSD, images: Any) -> np.ndarray:
    """`images` as (n, H, W, 3) uint8 at the model input size, n >= 1, or ValueError."""
    height, width = model.ssd_config.image_size
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (height, width, 3):
        raise ValueError(
            f"calibration images must be (n, {height}, {width}, 3) uint8, got "
            f"{images.shape} {images.dtype}"
        )
    if len(images) == 0:
        raise ValueError("quantisation needs at least one calibration image")
    return images


def quantize(
    model: SSD,
    cache: ArtifactCache,
    engine: str,
    calibration_images: Any,
    description: Mapping[str, Any] | None = None,
) -> Path:
    """Quantise the model's network to int8 for `engine` and store it in `cache`.

    Args:
        model: the SSD (any mode; its network is quantised).
        cache: the model's engine cache.
        engine: "openvino" or "onnxruntime".
        calibration_images: (n, H, W, 3) uint8 RGB at the model input size, n >= 1.
        description: what the images are (e.g. the dataset spec), saved in calibration.json.

    Returns:
        The artifact folder (network files and `calibration.json`); an existing quantised
        network of the same model and engine is replaced.

    Raises:
        ValueError: an engine without int8, or malformed calibration images.
        EngineUnavailableError: the engine's packages are not installed.
    """
    if engine not in QUANTIZED_ENGINES:
        raise ValueError(f"int8 engines are {QUANTIZED_ENGINES}, got {engine!r}")
    images = check_calibration_images(model, calibration_images)
    writer = _quantize_openvino if engine == "openvino" else _quantize_onnxruntime
    write_network, versions = writer(model, cache, images)
    record = {"images": len(images), **dict(description or {}), **versions}
    target = cache.path(quantized_name(engine, "int8"))
    if target.exists():
        shutil.rmtree(target)

    def write(partial: Path) -> None:
        partial.mkdir()
        write_network(partial)
        (partial / CALIBRATION_FILE).write_text(json.dumps(record, indent=2))

    path = cache.get_or_make(target.name, write)
    logger.info("int8 %s network of %s in %s (%d images)", engine, model.name, path, len(images))
    return path


def quantize_openvino(
    model: SSD,
    cache: ArtifactCache,
    calibration_images: Any,
    description: Mapping[str, Any] | None = None,
) -> Path:
    """`quantize(model, cache, "openvino", ...)`."""
    return quantize(model, cache, "openvino", calibration_images, description)


def _quantize_openvino(model: SSD, cache: ArtifactCache, images: np.ndarray):
    """NNCF on the fp32 IR: (a function writing the quantised IR into a folder, versions)."""
    ov, nncf = require("openvino"), require("nncf")
    fp32_network = ov.Core().read_model(str(network_openvino(model, cache) / "network.xml"))
    dataset = nncf.Dataset([images[i : i + 1] for i in range(len(images))])
    quantized = nncf.quantize(fp32_network, dataset, subset_size=len(images))

    def write(folder: Path) -> None:
        ov.save_model(quantized, str(folder / NETWORK_FILES["openvino"]), compress_to_fp16=False)

    return write, {"nncf": nncf.__version__, "openvino": ov.__version__}


def _quantize_onnxruntime(model: SSD, cache: ArtifactCache, images: np.ndarray):
    """ONNX Runtime static QDQ quantisation of the tf2onnx network: (a function writing the
    quantised ONNX into a folder, versions)."""
    ort = require("onnxruntime")
    quantization = require("onnxruntime.quantization")
    fp32 = network_onnx(model, cache)
    with tempfile.TemporaryDirectory(prefix="ssd_ort_int8_") as tmp:
        prepared, output = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        # Shape inference and graph optimisation first, as ONNX Runtime recommends; ONNX's own
        # shape inference suffices (every shape but the batch is static), so no sympy.
        quantization.quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        quantization.quantize_static(
            str(prepared),
            str(output),
            _CalibrationReader(quantization.CalibrationDataReader, images),
            quant_format=quantization.QuantFormat.QDQ,
            per_channel=True,
            activation_type=quantization.QuantType.QUInt8,
            weight_type=quantization.QuantType.QInt8,
            calibrate_method=quantization.CalibrationMethod.MinMax,
            extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
        )
        network = output.read_bytes()

    def write(folder: Path) -> None:
        (folder / NETWORK_FILES["onnxruntime"]).write_bytes(network)

    return write, {"onnxruntime": ort.__version__}


def _CalibrationReader(base: type, images: np.ndarray) -> Any:  # noqa: N802 - a class factory
    """An `onnxruntime.quantization.CalibrationDataReader` over images, one per batch."""

    class Reader(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            self._next = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self._next >= len(images):
                return None
            self._next += 1
            return {"images": images[self._next - 1 : self._next]}

        def rewind(self) -> None:
            self._next = 0

    return Reader()
