"""Convert the network half of an SSD (`ssd_core.engines.network`) with the tools made for it:
tf2onnx to ONNX, then OpenVINO's `convert_model` from that ONNX to an OpenVINO IR.

Both are optional dependencies (the `onnx` and `openvino` extras); a missing one raises
`EngineUnavailableError` naming the extra.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

from ssd_core.engines.base import EngineUnavailableError
from ssd_core.engines.cache import ArtifactCache
from ssd_core.engines.network import network_function
from ssd_core.model import SSD

logger = logging.getLogger(__name__)

ONNX_OPSET = 17
# Which extra brings which optional package, for the message when one is missing.
EXTRAS = {"tf2onnx": "onnx", "onnxruntime": "onnx", "openvino": "openvino", "nncf": "openvino"}


def require(package: str) -> Any:
    """Import an optional package, or raise `EngineUnavailableError` saying how to install it."""
    try:
        return importlib.import_module(package)
    except ImportError as error:
        extra = EXTRAS.get(package, package)
        raise EngineUnavailableError(
            f"{package} is not installed ({error}); install the '{extra}' extra: "
            f"pip install -e '.[{extra}]'"
        ) from None


def onnx_artifact_name() -> str:
    tf2onnx = require("tf2onnx")
    return f"network-tf2onnx{tf2onnx.__version__}-opset{ONNX_OPSET}.onnx"


def network_onnx(model: SSD, cache: ArtifactCache) -> Path:
    """The model's network as ONNX (input `images` uint8, outputs `cls_logits`,
    `bbox_regression`), converted by tf2onnx once per model file."""
    tf2onnx = require("tf2onnx")

    def convert(partial: Path) -> None:
        network = network_function(model)
        tf2onnx.convert.from_function(
            network,
            input_signature=network.input_signature,
            opset=ONNX_OPSET,
            output_path=str(partial),
        )

    return cache.get_or_make(onnx_artifact_name(), convert)


def network_openvino(model: SSD, cache: ArtifactCache) -> Path:
    """The model's network as an OpenVINO IR folder (`network.xml` + `network.bin`, fp32
    weights), converted from the ONNX of `network_onnx` by `openvino.convert_model`."""
    ov = require("openvino")
    onnx_path = network_onnx(model, cache)

    def convert(partial: Path) -> None:
        partial.mkdir()
        converted = ov.convert_model(str(onnx_path))
        # fp32 weights on disk: the default (fp16 compression) would cost the fp32 parity.
        ov.save_model(converted, str(partial / "network.xml"), compress_to_fp16=False)

    return cache.get_or_make(f"openvino{ov.__version__.split('-')[0]}-fp32", convert)
