"""`auto` on a CPU measures the installed engines once per host and model, keeps the fastest
and remembers the choice in the model's engine cache."""

from __future__ import annotations

import json
import shutil
import time

import keras
import numpy as np
import pytest

import ssd_core
from ssd_core.config import SSDConfig
from ssd_core.decoder_config import DecoderConfig
from ssd_core.engines import ArtifactCache, Engine, EngineUnavailableError, auto, create_engine


class Sleeper(Engine):
    """A stand-in engine taking `seconds` per image."""

    name = "sleeper"

    def __init__(self, seconds: float) -> None:
        super().__init__(SSDConfig.preset("ssd7", image_size=(8, 8)), DecoderConfig(), "fp32")
        self.seconds = seconds

    def network(self, images):
        time.sleep(self.seconds * len(images))
        return None, None

    def decode(self, cls_logits, bbox_regression, threshold, count):
        return {}


@pytest.fixture
def cache(tmp_path):
    model = ssd_core.build_model(SSDConfig.preset("ssd7", image_size=(128, 128)), mode="inference")
    return ArtifactCache(model, None, tmp_path)


def test_choose_keeps_the_fastest_and_remembers_it(cache, monkeypatch):
    monkeypatch.setattr(auto, "MIN_SECONDS", 0.0)
    speeds = {"openvino": 0.004, "onnxruntime": 0.001, "tf": 0.002}
    built = []

    def build(name):
        built.append(name)
        return Sleeper(speeds[name])

    chosen = auto.choose(build, list(speeds), cache, "auto", (1, 2))
    assert chosen.seconds == speeds["onnxruntime"]
    [record] = cache.directory.glob("auto-*.json")
    content = json.loads(record.read_text())
    assert content["engine"] == "onnxruntime"
    assert set(content["ms_per_image"]) == set(speeds)

    built.clear()
    monkeypatch.setattr(auto, "measure", lambda *a: pytest.fail("measured again"))
    assert auto.choose(build, list(speeds), cache, "auto", (1, 2)).seconds == 0.001
    assert built == ["onnxruntime"]  # a restart builds only the remembered engine


def test_choose_measures_anew_for_other_batch_sizes_or_precision(cache, monkeypatch):
    monkeypatch.setattr(auto, "MIN_SECONDS", 0.0)
    auto.choose(lambda name: Sleeper(0.001), ["tf", "onnxruntime"], cache, "auto", (1, 2))
    auto.choose(lambda name: Sleeper(0.001), ["tf", "onnxruntime"], cache, "auto", (1, 4))
    auto.choose(lambda name: Sleeper(0.001), ["tf", "onnxruntime"], cache, "int8", (1, 4))
    assert len(list(cache.directory.glob("auto-*.json"))) == 3


def test_choose_skips_engines_that_cannot_run(cache):
    def build(name):
        if name == "openvino":
            raise EngineUnavailableError("no int8 network for openvino")
        return Sleeper(0.0)

    assert isinstance(auto.choose(build, ["openvino", "tf"], cache, "int8", (1,)), Sleeper)
    with pytest.raises(EngineUnavailableError, match="no int8 network"):
        auto.choose(build, ["openvino"], cache, "int8", (1,))


def test_auto_on_a_model_file_picks_an_installed_engine_once(tmp_path, monkeypatch):
    path = tmp_path / "shapes.keras"
    shutil.copy(ssd_core.embedded_models()["shapes"], path)
    model = ssd_core.to_inference(keras.saving.load_model(path))
    monkeypatch.setattr(auto, "MIN_SECONDS", 0.0)
    runner = create_engine(model, "auto", model_path=path, batch_sizes=(1, 2))
    assert runner.precision == "fp32"
    [record] = (tmp_path / ".ssd_engines").glob("*/auto-*.json")
    assert json.loads(record.read_text())["engine"] == runner.name
    monkeypatch.setattr(auto, "measure", lambda *a: pytest.fail("measured again"))
    again = create_engine(model, "auto", model_path=path, batch_sizes=(1, 2))
    assert again.name == runner.name
    images = np.zeros((1, *model.ssd_config.image_size, 3), np.uint8)
    assert again.run(images)["boxes"].shape[0] == 1
