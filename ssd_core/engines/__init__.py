"""Inference engines behind one interface: run an inference-mode SSD's network and decoder on
(B, H, W, 3) uint8 RGB at the model input size, return the padded outputs dict.

    from ssd_core.engines import create_engine
    engine = create_engine(model, "openvino", model_path="model.keras")
    outputs = engine.run(images)  # boxes (B, K, 4), scores, labels, num_detections

`tf` / `tf-xla` run the Keras model; `onnxruntime` / `openvino` run the network converted by
tf2onnx / OpenVINO (cached next to the model file, keyed by its hash) and the decoder after it
(`network.HostDecoder`: NumPy when few candidates pass the threshold, else the TF decoder).
`auto` picks per host (`registry`). ONNX Runtime and OpenVINO are optional extras.
"""

from ssd_core.engines.base import PRECISIONS, Engine, EngineUnavailableError, StageTimes
from ssd_core.engines.cache import ArtifactCache
from ssd_core.engines.registry import (
    ENGINE_CHOICES,
    ENGINES,
    EngineChoice,
    available_engines,
    check_available,
    create_engine,
    resolve,
)

__all__ = [
    "ENGINES",
    "ENGINE_CHOICES",
    "PRECISIONS",
    "ArtifactCache",
    "Engine",
    "EngineChoice",
    "EngineUnavailableError",
    "StageTimes",
    "available_engines",
    "check_available",
    "create_engine",
    "resolve",
]
