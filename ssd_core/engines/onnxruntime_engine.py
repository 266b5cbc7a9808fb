"""ONNX Runtime engine: the network converted by tf2onnx (cached), run by ONNX Runtime's CPU
(or CUDA, where installed) execution provider, then the TF decoder (`network.py` says why)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ssd_core import fields
from ssd_core.engines.base import Engine
from ssd_core.engines.cache import ArtifactCache
from ssd_core.engines.conversion import network_onnx, require
from ssd_core.engines.network import TFDecoder
from ssd_core.model import SSD


class OnnxRuntimeEngine(Engine):
    """Args:
    model: an inference-mode SSD.
    cache: where the converted network is kept.
    precision: "fp32", or "int8" for the statically quantised network
        (`ssd_core.engines.quantize`, made by `scripts/export.py --quantize int8`).
    """

    name = "onnxruntime"

    def __init__(self, model: SSD, cache: ArtifactCache, precision: str = "fp32") -> None:
        super().__init__(model.ssd_config, precision)
        ort = require("onnxruntime")
        path = self._network_path(model, cache)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = [
            p
            for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
            if p in ort.get_available_providers()
        ]
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        self.network_path = path
        self.decoder = TFDecoder(model)

    def _network_path(self, model: SSD, cache: ArtifactCache) -> Path:
        if self.precision == "fp32":
            return network_onnx(model, cache)
        from ssd_core.engines.quantize import quantized_artifact

        return quantized_artifact(cache, self.name, self.precision)

    def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        cls_logits, bbox_regression = self.session.run(
            list(fields.NETWORK_OUTPUTS), {"images": self.check_images(images)}
        )
        return self.decoder(cls_logits, bbox_regression)

    def describe(self) -> str:
        providers = ",".join(self.session.get_providers())
        network = self.network_path.relative_to(self.network_path.parents[1])
        return f"{self.name} {self.precision} ({providers}) network {network}"
