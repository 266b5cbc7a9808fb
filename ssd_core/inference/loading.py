"""A saved or in-memory SSD of either mode as the inference model that decodes it.

`load_inference_model` is what the service, `scripts/evaluate.py`, `scripts/predict.py` and
`scripts/export.py` load a `.keras` file with; `as_inference` what training-time validation and
export convert an in-memory model with.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ssd_core.decoder_config import DecoderConfig
from ssd_core.input_files import InputFileError, load_keras_model
from ssd_core.model import SSD, to_inference

logger = logging.getLogger(__name__)


def as_inference(model: SSD, decoder_config: DecoderConfig | None = None) -> SSD:
    """`model` itself if it is an inference model decoding with `decoder_config` (None: its
    own decoder), else an inference-mode copy with its weights (`ssd_core.to_inference`).

    Raises:
        TypeError: `model` is not an `ssd_core` SSD.
    """
    if not isinstance(model, SSD):
        raise TypeError(f"model must be an ssd_core SSD model, got {type(model).__name__}")
    decoder_config = decoder_config or model.decoder_config
    if model.mode == "inference" and model.decoder_config == decoder_config:
        return model
    return to_inference(model, decoder_config)


def load_inference_model(
    path: str | Path, decoder_overrides: Mapping[str, Any] | None = None
) -> SSD:
    """The `.keras` SSD at `path` (either mode) as an inference model.

    Args:
        path: a `.keras` file saved by `ssd_core` (training-mode files are converted).
        decoder_overrides: `DecoderConfig` fields to change from the decoder saved with the
            model (e.g. `{"score_threshold": 0.3}`); None: decode as saved.

    Raises:
        InputFileError: the file is missing, truncated, not a Keras archive, or a Keras model
            that is not an `ssd_core` SSD; the message names the file.
        ValueError: an invalid override.
    """
    model = load_keras_model(path)
    if not isinstance(model, SSD):
        raise InputFileError(
            path,
            f"a Keras model ({type(model).__name__}) but not an SSD model saved by ssd_core",
        )
    if model.mode != "inference":
        logger.info("%s is a training-mode model: decoding it in inference mode", path)
    return as_inference(model, model.decoder_config.replace(**(decoder_overrides or {})))
