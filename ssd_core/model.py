"""The SSD model: normalisation, backbone, heads and (in inference mode) TF-side decoding.

`SSD` is a registered functional `keras.Model` subclass (the keras-hub pattern): it builds its
graph from an `SSDConfig` in `__init__` and serialises only its constructor arguments, so a
saved `.keras` file carries its config and loads back with nothing but `import ssd_core`.
"""

from __future__ import annotations

import logging
from typing import Any

import keras

from ssd_core.backbones import build_backbone
from ssd_core.config import SSDConfig
from ssd_core.heads import build_heads
from ssd_core.layers import ImageNormalization
from ssd_core.postprocess import (
    CAFFE_IOU_THRESHOLD,
    CAFFE_MAX_DETECTIONS,
    CAFFE_SCORE_THRESHOLD,
    CAFFE_TOP_K,
    DetectionDecoder,
    validate_decoding_arguments,
)

logger = logging.getLogger(__name__)

MODES = ("training", "inference")


@keras.saving.register_keras_serializable(package="ssd_core")
class SSD(keras.Model):
    """SSD300 / SSD512 / SSD7 detector.

    Args:
        ssd_config: the model's `SSDConfig`, or its `to_dict()`.
        mode: `"training"` outputs raw predictions, `"inference"` appends decoding.
        decoder: `"caffe"` (per-class NMS, Caffe DetectionOutput) or `"fast"` (class-agnostic).
        score_threshold: minimum class probability of a detection (inference mode).
        iou_threshold: NMS IoU threshold (inference mode).
        top_k: candidates per class kept before NMS (inference mode).
        max_detections: detections per image after NMS, K (inference mode).
        clip: clip decoded boxes to [0, 1] before NMS (inference mode); Caffe's
            DetectionOutput does not, so `clip=False` reproduces a Caffe model's output.

    Input: `"images"` (B, H, W, 3) uint8 or float, RGB, 0..255, H x W = `config.image_size`.
    Outputs, training mode: `{"cls_logits": (B, N, C), "bbox_regression": (B, N, 4)}`;
    inference mode: `{"boxes": (B, K, 4) normalised [xmin, ymin, xmax, ymax], "scores": (B, K),
    "classes": (B, K) int32, "num_detections": (B,) int32}`.
    """

    def __init__(
        self,
        ssd_config: SSDConfig | dict[str, Any],
        mode: str = "training",
        decoder: str = "caffe",
        score_threshold: float = CAFFE_SCORE_THRESHOLD,
        iou_threshold: float = CAFFE_IOU_THRESHOLD,
        top_k: int = CAFFE_TOP_K,
        max_detections: int = CAFFE_MAX_DETECTIONS,
        clip: bool = True,
        **kwargs: Any,
    ) -> None:
        config = (
            ssd_config if isinstance(ssd_config, SSDConfig) else SSDConfig.from_dict(ssd_config)
        )
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        # Checked in training mode too: the options travel to `to_inference`.
        validate_decoding_arguments(decoder, score_threshold, iou_threshold, top_k, max_detections)
        decoder_options = {
            "score_threshold": float(score_threshold),
            "iou_threshold": float(iou_threshold),
            "top_k": int(top_k),
            "max_detections": int(max_detections),
            "clip": bool(clip),
        }

        # === Functional graph ===
        images = keras.Input(shape=(*config.image_size, 3), name="images")
        normalised = ImageNormalization(
            config.pixel_mean, config.pixel_std, config.channel_order, name="image_normalization"
        )(images)
        outputs = build_heads(config, build_backbone(config, normalised))
        if mode == "inference":
            outputs = _decode(config, outputs, decoder, decoder_options)
        kwargs.setdefault("name", config.name)
        super().__init__(inputs=images, outputs=outputs, **kwargs)

        # === Config ===
        self._ssd_config = config
        self.mode = mode
        self.decoder = decoder
        self.decoder_options = decoder_options

    @property
    def ssd_config(self) -> SSDConfig:
        """The `SSDConfig` the model was built from."""
        return self._ssd_config

    def get_config(self) -> dict[str, Any]:
        return {
            "ssd_config": self._ssd_config.to_dict(),
            "mode": self.mode,
            "decoder": self.decoder,
            **self.decoder_options,
            "name": self.name,
            "trainable": self.trainable,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SSD:
        return cls(**config)


def _decode(
    config: SSDConfig, raw: dict[str, Any], method: str, options: dict[str, Any]
) -> dict[str, Any]:
    """Append the TF-side decoder of `ssd_core.postprocess` to the raw outputs."""
    decoder = DetectionDecoder(config.to_dict(), method=method, name="detection_decoder", **options)
    return decoder({"cls_logits": raw["cls_logits"], "bbox_regression": raw["bbox_regression"]})


def build_model(
    config: SSDConfig,
    mode: str = "training",
    *,
    decoder: str = "caffe",
    score_threshold: float = CAFFE_SCORE_THRESHOLD,
    iou_threshold: float = CAFFE_IOU_THRESHOLD,
    top_k: int = CAFFE_TOP_K,
    max_detections: int = CAFFE_MAX_DETECTIONS,
    clip: bool = True,
) -> SSD:
    """Build the SSD network of `config` (see `SSD` for inputs and outputs).

    Weights are freshly initialised; load trained ones with `model.load_weights` or
    `ssd_core` weight converters. Decoder options only matter in inference mode.
    """
    if not isinstance(config, SSDConfig):
        raise TypeError(f"config must be an SSDConfig, got {type(config).__name__}")
    return SSD(
        config,
        mode=mode,
        decoder=decoder,
        score_threshold=score_threshold,
        iou_threshold=iou_threshold,
        top_k=top_k,
        max_detections=max_detections,
        clip=clip,
    )


def to_inference(model: SSD, **decoder_options: Any) -> SSD:
    """An inference-mode copy of `model` (any mode) with its weights, copied by layer name.

    Args:
        model: a built `SSD`.
        **decoder_options: `decoder`, `score_threshold`, `iou_threshold`, `top_k`,
            `max_detections`, `clip`; unset ones keep `model`'s values.

    Returns:
        A new `SSD` in inference mode sharing no variables with `model`.
    """
    if not isinstance(model, SSD):
        raise TypeError(f"model must be an ssd_core SSD model, got {type(model).__name__}")
    options = {"decoder": model.decoder, **model.decoder_options, **decoder_options}
    inference = SSD(model.ssd_config, mode="inference", name=model.name, **options)
    copied = 0
    for layer in model.layers:
        if layer.weights:
            inference.get_layer(layer.name).set_weights(layer.get_weights())
            copied += 1
    logger.info("to_inference: copied the weights of %d layers of %s", copied, model.name)
    return inference
