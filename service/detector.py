"""The served model: loading, warm-up, the batched forward pass, boxes back to image pixels.

The forward pass is one `tf.function` with a fixed input signature (any batch size, the
model's input size, uint8), so it is traced once; warm-up runs every padded batch size so no
request pays for graph building or kernel autotuning.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.model_file import check_model_file, check_ssd_model, load_error
from ssd_core import fields

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RawDetections:
    """One image's model output, padding removed.

    Attributes:
        boxes: (n, 4) float32, normalised [xmin, ymin, xmax, ymax].
        scores: (n,) float32, highest first.
        classes: (n,) int32 labels 1..C-1.
    """

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray


@dataclass(frozen=True)
class Detection:
    """One detection for the API: `box` is (xmin, ymin, xmax, ymax) in original-image pixels."""

    label: str
    class_id: int
    score: float
    box: tuple[float, float, float, float]


class Detector:
    """Wraps an inference-mode model that follows the `ssd_core` output contract.

    Args:
        model: keras Model with attribute `ssd_config`; input (B, H, W, 3) uint8 RGB at
            `ssd_config.image_size`; outputs "boxes", "scores", "classes", "num_detections".
        version: reported to clients (e.g. a hash of the model file).
    """

    def __init__(self, model: Any, version: str) -> None:
        import tensorflow as tf

        self.model = model
        self.config = model.ssd_config
        self.name: str = self.config.name
        self.version = version
        self.trace_count = 0
        height, width = self.config.image_size
        signature = [tf.TensorSpec((None, height, width, 3), tf.uint8, name="images")]

        @tf.function(input_signature=signature)
        def forward(images: Any) -> Any:
            self.trace_count += 1  # Python side effect: runs once per trace, never per call
            outputs = model(images, training=False)
            return {key: outputs[key] for key in fields.DETECTION_OUTPUTS}

        self._forward = forward

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) in pixels that images are resized to."""
        return self.config.image_size

    def predict_batch(self, images: np.ndarray) -> list[RawDetections]:
        """(B, H, W, 3) uint8 RGB -> one `RawDetections` per image. Blocking; run off-loop."""
        outputs = {key: value.numpy() for key, value in self._forward(images).items()}
        results = []
        for i, count in enumerate(outputs["num_detections"]):
            n = int(count)
            results.append(
                RawDetections(
                    boxes=outputs["boxes"][i, :n].astype(np.float32),
                    scores=outputs["scores"][i, :n].astype(np.float32),
                    classes=outputs[fields.LABELS][i, :n].astype(np.int32),
                )
            )
        return results

    def warm_up(self, batch_sizes: Iterable[int]) -> None:
        """Run one zero batch of every size the batcher pads to."""
        height, width = self.input_size
        for size in batch_sizes:
            self.predict_batch(np.zeros((size, height, width, 3), dtype=np.uint8))
        logger.info("warmed up %s at batch sizes %s", self.name, list(batch_sizes))


def to_pixel_detections(
    raw: RawDetections,
    *,
    width: int,
    height: int,
    label_names: Sequence[str],
    score_threshold: float,
    max_detections: int,
    classes: frozenset[int] | None = None,
) -> list[Detection]:
    """Filter one image's detections and scale them to its original size.

    Args:
        raw: normalised model output for the image.
        width, height: original image size in pixels.
        label_names: names by label, background first (`SSDConfig.label_names`).
        score_threshold: keep scores >= this.
        max_detections: keep at most this many, highest scores first.
        classes: keep only these labels; None keeps all.

    Returns:
        Detections sorted by score, boxes clipped to [0, width] x [0, height] pixels; boxes
        with no area inside the image are dropped.
    """
    order = np.argsort(-raw.scores, kind="stable")
    scale = np.array([width, height, width, height], dtype=np.float64)
    detections: list[Detection] = []
    for i in order:
        score = float(raw.scores[i])
        label = int(raw.classes[i])
        if score < score_threshold or (classes is not None and label not in classes):
            continue
        box = np.clip(raw.boxes[i].astype(np.float64), 0.0, 1.0) * scale
        if box[2] <= box[0] or box[3] <= box[1]:
            # Wholly outside the image: models decoded without clipping (Caffe semantics) can
            # score such boxes; the face detector's conv8_2/conv9_2 anchors reach 4.5 image
            # widths out. Nothing of the box is in the image, so it is not a detection.
            continue
        detections.append(
            Detection(
                label=label_names[label],
                class_id=label,
                score=score,
                box=(float(box[0]), float(box[1]), float(box[2]), float(box[3])),
            )
        )
        if len(detections) == max_detections:
            break
    return detections


def load_detector(model_path: Path | None, version: str | None = None) -> Detector:
    """Load the model to serve (see `resolve_model`) and wrap it in a `Detector`."""
    model, default_version = resolve_model(model_path)
    return Detector(model, version or default_version)


def resolve_model(model_path: Path | None) -> tuple[Any, str]:
    """The inference-mode model to serve and its version.

    `model_path` if given, else the embedded default model (`ssd_core.default_model_path()`),
    else - until a trained default ships - a randomly initialised SSD7, with a warning.
    """
    import keras

    import ssd_core

    if model_path is None:
        default_path = getattr(ssd_core, "default_model_path", None)
        candidate = Path(default_path()) if default_path is not None else None
        if candidate is not None and candidate.exists():
            model_path = candidate
    if model_path is None:
        logger.warning(
            "no SSD_MODEL_PATH and no embedded default model: serving a RANDOMLY INITIALISED "
            "SSD7; its detections are meaningless"
        )
        config = ssd_core.SSDConfig.preset("ssd7")
        return ssd_core.build_model(config, mode="inference"), "random-init"
    logger.info("loading model from %s", model_path)
    check_model_file(model_path)
    try:
        model = keras.saving.load_model(model_path)
    except Exception as error:  # Keras raises many types for a bad file; one line names it
        raise load_error(model_path, error) from error
    check_ssd_model(model, model_path)
    if getattr(model, "mode", "inference") != "inference":
        model = ssd_core.to_inference(model)
    return model, _file_version(model_path)


def _file_version(path: Path) -> str:
    """The first 12 hex digits of the file's SHA-256: changes exactly when the model does."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:12]
