"""ONNX Runtime engine: the network converted by tf2onnx (cached), run by ONNX Runtime's CPU
(or CUDA, where installed) execution provider, then the host-side decoder
(`network.py`, `HostDecoder`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ssd_core import fields
from ssd_core.engines.base import Engine
from ssd_core.engines.cache import ArtifactCache
from ssd_core.engines.conversion import network_onnx, require
from ssd_core.engines.network import HostDecoder
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
        super().__init__(model.ssd_config, model.decoder_config, precision)
        ort = require("onnxruntime")
        path = self._network_path(model, cache)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # ONNX Runtime's threads spin after a run by default, stealing the cores from the TF
        # decoder that runs next: off, the shapes SSD7 ran 1.7x faster end to end at batch 1
        # and 1.9x at batch 8 on the project's 2-vCPU VM (README, "Inference engines").
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = [
            p
            for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
            if p in ort.get_available_providers()
        ]
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        self.network_path = path
        self.decoder = HostDecoder(model.ssd_config, model.decoder_config)

    def _network_path(self, model: SSD, cache: ArtifactCache) -> Path:
        if self.precision == "fp32":
            return network_onnx(model, cache)
        from ssd_core.engines.quantize import quantized_artifact

        return quantized_artifact(cache, self.name, self.precision)

    def network(self, images: np.ndarray) -> tuple[Any, Any]:
        cls_logits, bbox_regression = self.session.run(
            list(fields.NETWORK_OUTPUTS), {"images": images}
        )
        return cls_logits, bbox_regression

    def decode(
        self, cls_logits: Any, bbox_regression: Any, threshold: np.float32, count: np.int32
    ) -> dict[str, np.ndarray]:
        return self.decoder(cls_logits, bbox_regression, threshold, count)

    def describe(self) -> str:
        providers = ",".join(self.session.get_providers())
        network = self.network_path.relative_to(self.network_path.parents[1])
        return f"{self.name} {self.precision} ({providers}) network {network}"
