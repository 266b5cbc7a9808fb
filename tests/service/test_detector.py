"""The served model version: no retracing, loading from a file, no random fallback, settings."""

from __future__ import annotations

import numpy as np
import pytest

import ssd_core
from service.detector import Detector, load_detector
from service.model_file import ModelFileError
from service.repository import _catalogue_for
from service.settings import Settings
from ssd_core.inference import Predictor
from ssd_core.input_files import file_digest
from tests.service.conftest import INPUT_SIZE, BrightRegionModel, make_settings


def test_forward_is_traced_once_for_every_padded_batch_size(tiny_config):
    detector = Detector(Predictor.from_model(BrightRegionModel(tiny_config)), version="t")
    detector.warm_up((1, 2, 4, 8))
    for size in (1, 2, 4, 8, 2, 1):
        detector.predict_batch(np.zeros((size, *INPUT_SIZE, 3), np.uint8))
    assert detector.predictor.engine.trace_count == 1


def test_load_detector_reads_a_saved_training_model_and_hashes_it(tmp_path):
    config = ssd_core.SSDConfig.preset("ssd7", image_size=INPUT_SIZE)
    path = tmp_path / "m.keras"
    ssd_core.build_model(config, mode="training").save(path)
    detector = load_detector(path)
    assert detector.version == file_digest(path)[:12]
    assert detector.config == config
    assert detector.decoder_config == ssd_core.DecoderConfig()
    [image] = detector.predict_batch(np.zeros((1, *INPUT_SIZE, 3), np.uint8))
    result = image.outputs
    assert result["boxes"].shape[1:] == (4,)  # a training-mode file is served in inference mode
    assert len(result["boxes"]) == len(result["scores"]) == len(result["labels"])


def test_a_missing_embedded_model_fails_naming_its_path(monkeypatch, tmp_path):
    absent = tmp_path / "absent.keras"
    monkeypatch.setattr(ssd_core, "embedded_models", lambda: {"face": absent})
    catalogue, _ = _catalogue_for(make_settings())
    with pytest.raises(ModelFileError, match=f"{absent} does not exist"):
        catalogue.scan()["face"][1].load()


def test_a_random_model_is_served_only_when_asked_for(monkeypatch, caplog, tmp_path):
    monkeypatch.setattr(ssd_core, "embedded_models", lambda: {"face": tmp_path / "absent.keras"})
    _, loader = _catalogue_for(make_settings(allow_random_model=True))
    detector = loader()
    assert (detector.name, detector.version) == ("ssd7", "random-init")
    assert "RANDOMLY INITIALISED" in caplog.text


def test_settings_read_ssd_prefixed_environment(monkeypatch):
    monkeypatch.setenv("SSD_MAX_BATCH_SIZE", "16")
    monkeypatch.setenv("SSD_MODEL_PATH", "")  # compose passes unset variables as ""
    settings = Settings()
    assert (settings.max_batch_size, settings.model_path, settings.http_port) == (16, None, 8080)


def test_settings_reject_a_missing_model_file(monkeypatch, tmp_path):
    monkeypatch.setenv("SSD_MODEL_PATH", str(tmp_path / "nope.keras"))
    with pytest.raises(ValueError, match="does not exist"):
        Settings()


@pytest.mark.parametrize("value", ["1", "1.5", "-0.1"])
def test_settings_reject_a_score_threshold_outside_zero_to_one(monkeypatch, value):
    monkeypatch.setenv("SSD_SCORE_THRESHOLD", value)
    with pytest.raises(ValueError, match=r"must be in \[0, 1\)"):
        Settings()
