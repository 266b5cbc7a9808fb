"""The SSD model: normalisation, backbone, heads and (in inference mode) TF-side decoding.

`SSD` is a registered functional `keras.Model` subclass (the keras-hub pattern): it builds its
graph from an `SSDConfig` in `__init__` and serialises only its constructor arguments, so a
saved `.keras` file carries its config and loads back with nothing but `import ssd_core`.
"""

from __future__ import annotations

import logging
from typing import Any

import keras

from ssd_core import fields
from ssd_core.backbones import build_backbone
from ssd_core.config import SSDConfig
from ssd_core.decoder_config import LEGACY_METHOD_KEY, DecoderConfig
from ssd_core.heads import build_heads
from ssd_core.layers import ImageNormalization
from ssd_core.postprocess import DetectionDecoder

logger = logging.getLogger(__name__)

MODES = ("training", "inference")
# `SSD` keywords of models saved before the DecoderConfig existed; read into one.
_LEGACY_DECODER_KEYS = (LEGACY_METHOD_KEY, *(f for f in DecoderConfig.__dataclass_fields__))


@keras.saving.register_keras_serializable(package="ssd_core")
class SSD(keras.Model):
    """SSD300 / SSD512 / SSD7 detector.

    Args:
        ssd_config: the model's `SSDConfig`, or its `to_dict()`.
        mode: `"training"` outputs raw predictions, `"inference"` appends decoding.
        decoder_config: the `DecoderConfig` (or its dict) of inference mode; kept in training
            mode too, for `to_inference`. None: the defaults (Caffe's).

    Input: `"images"` (B, H, W, 3) uint8 or float, RGB, 0..255, H x W = `config.image_size`.
    Outputs (`ssd_core.fields`), training mode: `{"cls_logits": (B, N, C),
    "bbox_regression": (B, N, 4)}`; inference mode: `{"boxes": (B, K, 4) normalised
    [xmin, ymin, xmax, ymax], "scores": (B, K), "labels": (B, K) int32, "num_detections": (B,)
    int32}`.
    """

    def __init__(
        self,
        ssd_config: SSDConfig | dict[str, Any],
        mode: str = "training",
        decoder_config: DecoderConfig | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        config = (
            ssd_config if isinstance(ssd_config, SSDConfig) else SSDConfig.from_dict(ssd_config)
        )
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if not isinstance(decoder_config, DecoderConfig):
            decoder_config = DecoderConfig.from_dict(decoder_config or {})

        # === Functional graph ===
        images = keras.Input(shape=(*config.image_size, 3), name="images")
        normalised = ImageNormalization(
            config.pixel_mean, config.pixel_std, config.channel_order, name="image_normalization"
        )(images)
        outputs = build_heads(config, build_backbone(config, normalised))
        if mode == "inference":
            outputs = DetectionDecoder(config, decoder_config, name="detection_decoder")(
                {key: outputs[key] for key in fields.NETWORK_OUTPUTS}
            )
        kwargs.setdefault("name", config.name)
        super().__init__(inputs=images, outputs=outputs, **kwargs)

        # === Config ===
        self._ssd_config = config
        self.mode = mode
        self.decoder_config = decoder_config

    @property
    def ssd_config(self) -> SSDConfig:
        """The `SSDConfig` the model was built from."""
        return self._ssd_config

    def get_config(self) -> dict[str, Any]:
        return {
            "ssd_config": self._ssd_config.to_dict(),
            "mode": self.mode,
            "decoder_config": self.decoder_config.to_dict(),
            "name": self.name,
            "trainable": self.trainable,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SSD:
        config = dict(config)
        legacy = {key: config.pop(key) for key in _LEGACY_DECODER_KEYS if key in config}
        if legacy:  # saved with decoder keywords (`decoder="caffe", score_threshold=...`)
            config["decoder_config"] = DecoderConfig.from_dict(legacy)
        return cls(**config)


def build_model(
    config: SSDConfig,
    mode: str = "training",
    decoder_config: DecoderConfig | None = None,
) -> SSD:
    """Build the SSD network of `config` (see `SSD` for inputs and outputs).

    Weights are freshly initialised; load trained ones with `model.load_weights` or
    `ssd_core` weight converters. `decoder_config` (default: Caffe's) decodes in inference
    mode and travels with the model in either mode.
    """
    if not isinstance(config, SSDConfig):
        raise TypeError(f"config must be an SSDConfig, got {type(config).__name__}")
    return SSD(config, mode=mode, decoder_config=decoder_config)


def to_inference(model: SSD, decoder_config: DecoderConfig | None = None) -> SSD:
    """An inference-mode copy of `model` (any mode) with its weights, copied by layer name.

    Args:
        model: a built `SSD`.
        decoder_config: the copy's decoder; None keeps `model.decoder_config`.

    Returns:
        A new `SSD` in inference mode sharing no variables with `model`.
    """
    return copy_model(model, "inference", decoder_config)


def copy_model(
    model: SSD,
    mode: str,
    decoder_config: DecoderConfig | None = None,
    dtype_policy: str | None = None,
) -> SSD:
    """A new `SSD` of `model`'s config in `mode` with `model`'s weights, copied by layer name.

    Args:
        model: a built `SSD`.
        mode: the copy's mode.
        decoder_config: the copy's decoder; None keeps `model.decoder_config`.
        dtype_policy: a Keras dtype policy to build the copy under (e.g. "mixed_bfloat16");
            None: the current global policy.
    """
    if not isinstance(model, SSD):
        raise TypeError(f"model must be an ssd_core SSD model, got {type(model).__name__}")
    decoder_config = decoder_config or model.decoder_config
    previous = keras.config.dtype_policy()
    if dtype_policy is not None:
        keras.config.set_dtype_policy(dtype_policy)
    try:
        copy = SSD(model.ssd_config, mode=mode, decoder_config=decoder_config, name=model.name)
    finally:
        keras.config.set_dtype_policy(previous)
    copied = 0
    for layer in model.layers:
        if layer.weights:
            copy.get_layer(layer.name).set_weights(layer.get_weights())
            copied += 1
    logger.info("copied the weights of %d layers of %s to a %s copy", copied, model.name, mode)
    return copy
