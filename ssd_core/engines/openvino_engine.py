"""OpenVINO engine: the network converted to an OpenVINO IR (from the tf2onnx ONNX, cached),
compiled for the CPU plugin, then the host-side decoder (`network.py`, `HostDecoder`).

fp32 sets `INFERENCE_PRECISION_HINT=f32` explicitly: on CPUs with AMX or AVX512_BF16 the
plugin's default is bf16, which would not match the TF reference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ssd_core import fields
from ssd_core.engines.base import Engine
from ssd_core.engines.cache import ArtifactCache
from ssd_core.engines.conversion import network_openvino, require
from ssd_core.engines.network import HostDecoder
from ssd_core.model import SSD

# OpenVINO's inference precision per engine precision ("int8" runs a quantised IR whose
# non-quantised parts stay f32).
PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}


class OpenVINOEngine(Engine):
    """Args:
    model: an inference-mode SSD.
    cache: where the converted network is kept.
    precision: "fp32", "bf16", or "int8" for the NNCF-quantised IR
        (`ssd_core.engines.quantize`, made by `scripts/export.py --quantize int8`).
    device: the OpenVINO device name.
    """

    name = "openvino"

    def __init__(
        self, model: SSD, cache: ArtifactCache, precision: str = "fp32", device: str = "CPU"
    ) -> None:
        if precision not in PRECISION_HINTS:
            raise ValueError(f"openvino runs {tuple(PRECISION_HINTS)}, got {precision!r}")
        super().__init__(model.ssd_config, model.decoder_config, precision)
        ov = require("openvino")
        self.network_path = self._network_path(model, cache)
        core = ov.Core()
        self.compiled = core.compile_model(
            core.read_model(str(self.network_path)),
            device,
            {"INFERENCE_PRECISION_HINT": PRECISION_HINTS[precision], "NUM_STREAMS": "1"},
        )
        self._request = self.compiled.create_infer_request()
        outputs = {output.get_any_name(): output for output in self.compiled.outputs}
        self._outputs = [outputs[name] for name in fields.NETWORK_OUTPUTS]
        self.decoder = HostDecoder(model.ssd_config, model.decoder_config)

    def _network_path(self, model: SSD, cache: ArtifactCache) -> Path:
        if self.precision in ("fp32", "bf16"):
            return network_openvino(model, cache) / "network.xml"
        from ssd_core.engines.quantize import quantized_artifact

        return quantized_artifact(cache, self.name, self.precision)

    def network(self, images: np.ndarray) -> tuple[Any, Any]:
        results = self._request.infer({0: images})
        cls_logits, bbox_regression = (results[output] for output in self._outputs)
        return cls_logits, bbox_regression

    def decode(
        self, cls_logits: Any, bbox_regression: Any, threshold: np.float32, count: np.int32
    ) -> dict[str, np.ndarray]:
        return self.decoder(cls_logits, bbox_regression, threshold, count)

    def describe(self) -> str:
        return f"{self.name} {self.precision} network {self.network_path.parent.name}"
