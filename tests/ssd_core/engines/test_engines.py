"""Every installed engine gives the TF reference's detections on the shipped face and shapes
models (real photos and generated scenes), caches its conversion by model hash, and reports a
missing optional package as a clear error."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest

import ssd_core
from ssd_core.data.shapes import render_scene
from ssd_core.engines import (
    ENGINES,
    ArtifactCache,
    EngineUnavailableError,
    create_engine,
    registry,
    resolve,
)
from ssd_core.engines.tf_engine import limit_outputs
from tests.reference.face_files import read_photo_rgb
from tests.ssd_core.engines.parity import assert_same_detections

FACE_PHOTOS = ("astronaut.png", "camera.png", "coffee.png")


def _resized(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


@pytest.fixture(scope="module")
def model_files(tmp_path_factory) -> dict[str, Path]:
    """Copies of the shipped models in a temporary folder (the engine cache goes next to them)."""
    folder = tmp_path_factory.mktemp("models")
    copies = {}
    for name, path in ssd_core.embedded_models().items():
        copies[name] = folder / path.name
        shutil.copy(path, copies[name])
    return copies


@pytest.fixture(scope="module")
def models(model_files) -> dict[str, ssd_core.SSD]:
    loaded = {}
    for name, path in model_files.items():
        model = keras.saving.load_model(path)
        loaded[name] = model if model.mode == "inference" else ssd_core.to_inference(model)
    return loaded


@pytest.fixture(scope="module")
def batches(models) -> dict[str, np.ndarray]:
    """A uint8 batch per model: real photos for the face detector, generated scenes for shapes."""
    face_size = models["face"].ssd_config.image_size
    shapes_size = models["shapes"].ssd_config.image_size
    rng = np.random.default_rng(11)
    scenes = [render_scene(rng, *shapes_size).image for _ in range(4)]
    return {
        "face": np.stack([_resized(read_photo_rgb(p), face_size) for p in FACE_PHOTOS]),
        "shapes": np.stack(scenes),
    }


@pytest.fixture(scope="module")
def references(models, batches) -> dict[str, dict[str, np.ndarray]]:
    return {name: create_engine(models[name], "tf").run(batches[name]) for name in models}


def _skip_unless_installed(engine: str) -> None:
    missing = registry.missing_packages(engine)
    if missing:
        pytest.skip(f"{engine} needs {missing} (the optional extra is not installed)")


@pytest.mark.parametrize("engine", [e for e in ENGINES if e != "tf"])
@pytest.mark.parametrize("model_name", ["face", "shapes"])
def test_engine_gives_the_tf_reference_detections(
    engine, model_name, models, model_files, batches, references
):
    _skip_unless_installed(engine)
    model = models[model_name]
    runner = create_engine(model, engine, model_path=model_files[model_name])
    outputs = runner.run(batches[model_name])
    reference = references[model_name]
    assert reference["num_detections"].sum() > 0
    assert_same_detections(reference, outputs, model.decoder_config.score_threshold)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("model_name", ["face", "shapes"])
def test_engine_decodes_at_the_calls_threshold_and_count(
    engine, model_name, models, model_files, batches, references
):
    # The service's per-batch limits reach the in-graph decoder: the same detections as
    # decoding at the model's floor and keeping the best `count` scoring above the threshold.
    _skip_unless_installed(engine)
    model = models[model_name]
    runner = create_engine(model, engine, model_path=model_files[model_name])
    outputs = runner.run(batches[model_name], score_threshold=0.3, max_detections=2)
    expected = limit_outputs(references[model_name], 0.3, 2)
    assert expected["num_detections"].sum() > 0
    assert_same_detections(expected, outputs, 0.3)
    assert outputs["boxes"].shape == references[model_name]["boxes"].shape  # still K rows
    assert runner.last_times.network_s > 0 and runner.last_times.decoding_s > 0


def test_engine_refuses_limits_its_decoder_cannot_honour(models):
    runner = create_engine(models["shapes"], "tf")
    images = np.zeros((1, *models["shapes"].ssd_config.image_size, 3), np.uint8)
    with pytest.raises(ValueError, match="score_threshold must be >= 0.01"):
        runner.run(images, score_threshold=0.001)
    with pytest.raises(ValueError, match=r"max_detections must be in 1\.\.200"):
        runner.run(images, max_detections=201)


def test_limit_outputs_keeps_the_leading_rows_above_the_threshold():
    outputs = {
        "boxes": np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4),
        "scores": np.array([[0.9, 0.5, 0.2], [0.4, 0.0, 0.0]], np.float32),
        "labels": np.array([[1, 2, 3], [2, 0, 0]], np.int32),
        "num_detections": np.array([3, 1], np.int32),
    }
    limited = limit_outputs(outputs, 0.45, 5)
    np.testing.assert_array_equal(limited["num_detections"], [2, 0])
    np.testing.assert_array_equal(limited["scores"], np.float32([[0.9, 0.5, 0], [0, 0, 0]]))
    np.testing.assert_array_equal(limited["labels"], [[1, 2, 0], [0, 0, 0]])
    np.testing.assert_array_equal(limited["boxes"][0, :2], outputs["boxes"][0, :2])
    assert not limited["boxes"][0, 2:].any() and not limited["boxes"][1].any()
    np.testing.assert_array_equal(limit_outputs(outputs, 0.1, 1)["num_detections"], [1, 1])


def test_reference_finds_the_astronaut_face(references):
    # The parity above is only worth something if the reference detects: one face at > 0.9.
    scores = references["face"]["scores"][0]
    assert scores[0] > 0.9 and scores[1] < 0.5


@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_conversion_is_cached_by_model_hash(engine, models, model_files, tmp_path, monkeypatch):
    _skip_unless_installed(engine)
    model = models["shapes"]
    path = tmp_path / "shapes.keras"
    shutil.copy(model_files["shapes"], path)
    create_engine(model, engine, model_path=path)
    [folder] = (tmp_path / ".ssd_engines").iterdir()
    assert folder.name.startswith("shapes-")
    artifacts = sorted(p.name for p in folder.iterdir())

    import tf2onnx

    def refuse(*args, **kwargs):
        raise AssertionError("converted again although the cache holds the network")

    monkeypatch.setattr(tf2onnx.convert, "from_function", refuse)
    runner = create_engine(model, engine, model_path=path)  # a "restart": a new engine
    assert sorted(p.name for p in folder.iterdir()) == artifacts
    assert runner.run(np.zeros((1, *model.ssd_config.image_size, 3), np.uint8))["boxes"].shape[0]


def test_a_changed_model_file_gets_a_new_cache_key(models, model_files, tmp_path):
    model = models["shapes"]
    path = tmp_path / "m.keras"
    shutil.copy(model_files["shapes"], path)
    before = ArtifactCache(model, path).key
    with path.open("ab") as handle:
        handle.write(b"\0")
    assert ArtifactCache(model, path).key != before


def test_an_unwritable_model_folder_falls_back_to_the_cache_dir(models, model_files, tmp_path):
    folder = tmp_path / "read-only"
    folder.mkdir()
    path = folder / "shapes.keras"
    shutil.copy(model_files["shapes"], path)
    # A file where the cache folder would go: creating it fails even for root.
    (folder / ".ssd_engines").write_text("not a folder")
    cache = ArtifactCache(models["shapes"], path, fallback_dir=tmp_path / "fallback")
    assert cache.directory.parent == tmp_path / "fallback"


def test_a_missing_optional_package_is_a_clear_error(models, monkeypatch):
    real_find_spec = registry.importlib.util.find_spec
    monkeypatch.setattr(
        registry.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "openvino" else real_find_spec(name, *a),
    )
    with pytest.raises(EngineUnavailableError, match=r"pip install -e '\.\[openvino\]'"):
        create_engine(models["shapes"], "openvino")


def test_int8_without_a_quantised_network_says_how_to_make_it(models, model_files, tmp_path):
    _skip_unless_installed("openvino")
    path = tmp_path / "shapes.keras"
    shutil.copy(model_files["shapes"], path)
    with pytest.raises(EngineUnavailableError, match="scripts/export.py .* --quantize int8"):
        create_engine(models["shapes"], "openvino", "int8", model_path=path)


def test_auto_rule_on_cpu(monkeypatch):
    monkeypatch.setattr(registry, "available_engines", lambda: ["tf", "tf-xla", "onnxruntime"])
    monkeypatch.setattr(registry, "cpu_has_amx", lambda: True)
    assert resolve("auto") == registry.EngineChoice("onnxruntime", "fp32")
    monkeypatch.setattr(registry, "available_engines", lambda: [*ENGINES])
    assert resolve("auto") == registry.EngineChoice("openvino", "bf16")
    monkeypatch.setattr(registry, "cpu_has_amx", lambda: False)
    assert resolve("auto") == registry.EngineChoice("openvino", "fp32")
    assert resolve("auto", "fp32") == registry.EngineChoice("openvino", "fp32")
    assert resolve("openvino") == registry.EngineChoice("openvino", "fp32")


def test_engine_refuses_images_of_the_wrong_size(models):
    runner = create_engine(models["shapes"], "tf")
    height, width = models["shapes"].ssd_config.image_size
    with pytest.raises(ValueError, match=rf"images must be \(B, {height}, {width}, 3\) uint8"):
        runner.run(np.zeros((1, 32, 32, 3), np.uint8))
