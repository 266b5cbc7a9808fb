"""int8 quantisation and its accuracy guards at --quick sizes (README "int8" has the full-size
runs): every installed int8 engine keeps the shapes SSD7's VOC07 mAP within 0.01 of its fp32
network on held-out scenes, and the face detector finds the same faces (IoU >= 0.9, score within
0.05) on the fidelity tests' real photos, calibrated on other photos."""

from __future__ import annotations

import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

import ssd_core
from ssd_core.data import load_dataset
from ssd_core.data.shapes import write_shapes_dataset
from ssd_core.engines import ArtifactCache, create_engine, registry
from ssd_core.engines.calibration import calibration_images
from ssd_core.engines.quantize import QUANTIZED_ENGINES, quantize
from ssd_core.engines.quantize_guard import guard_engine
from ssd_core.inference import as_inference
from tests.reference.face_files import package_dir, photo_path

FACE_PHOTOS = ("astronaut.png", "camera.png", "coffee.png")  # the fidelity tests' photos
# Calibration photos for the face detector: other photos of the same packages (a portrait, an
# animal, objects, scenes, textures), never the ones it is checked on.
CALIBRATION_PHOTOS = (
    "chelsea.png", "rocket.jpg", "motorcycle_left.png", "horse.png", "hubble_deep_field.jpg",
    "retina.jpg", "page.png", "brick.png", "coins.png", "ihc.png", "color.png", "grass.png",
)  # fmt: skip
SHAPES_SIZE = (192, 320)  # the shipped shapes model's training scenes (input 128x208)
QUICK_CALIBRATION, QUICK_HELD_OUT = 32, 48


def skip_unless_installed(engine: str) -> None:
    missing = registry.missing_packages(engine)
    if missing:
        pytest.skip(f"{engine} needs {missing} (the optional extra is not installed)")


def load_copy(name: str, folder: Path) -> tuple[ssd_core.SSD, Path]:
    path = folder / ssd_core.embedded_models()[name].name
    shutil.copy(ssd_core.embedded_models()[name], path)
    return as_inference(keras.saving.load_model(path)), path


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """The shipped shapes model (a copy), calibration scenes and held-out scenes."""
    root = tmp_path_factory.mktemp("int8_shapes")
    model, path = load_copy("shapes", root)
    calibration = write_shapes_dataset(root / "calibration", QUICK_CALIBRATION, 0, seed=0,
                                       height=SHAPES_SIZE[0], width=SHAPES_SIZE[1])  # fmt: skip
    held_out = write_shapes_dataset(root / "held_out", 0, QUICK_HELD_OUT, seed=1,
                                    height=SHAPES_SIZE[0], width=SHAPES_SIZE[1])  # fmt: skip
    return model, path, f"voc:{calibration}", f"voc:{held_out}"


@pytest.fixture(scope="module")
def face(tmp_path_factory):
    """The face detector (a copy), a folder of calibration photos, a folder of test photos."""
    root = tmp_path_factory.mktemp("int8_face")
    model, path = load_copy("face", root)
    (root / "calibration").mkdir()
    (root / "photos").mkdir()
    shutil.copy(package_dir("matplotlib") / "mpl-data" / "sample_data" / "grace_hopper.jpg",
                root / "calibration")  # fmt: skip
    for name in CALIBRATION_PHOTOS:
        shutil.copy(photo_path(name), root / "calibration")
    for name in FACE_PHOTOS:
        shutil.copy(photo_path(name), root / "photos")
    return model, path, f"images:{root / 'calibration'}", f"images:{root / 'photos'}"


@pytest.mark.parametrize("engine", QUANTIZED_ENGINES)
def test_int8_shapes_map_stays_within_0_01_of_fp32(engine, shapes):
    skip_unless_installed(engine)
    model, path, calibration, held_out = shapes
    images, description = calibration_images(
        calibration, "train", model.ssd_config, QUICK_CALIBRATION
    )
    quantize(model, ArtifactCache(model, path), engine, images, description)
    dataset = load_dataset(held_out, "test", model.ssd_config.class_names)
    result = guard_engine(model, path, engine, dataset)
    assert result.map_fp32 > 0.8, result.line()  # a guard on a model that detects
    assert result.map_int8 >= result.map_fp32 - 0.01, result.line()
    assert result.passed


@pytest.mark.parametrize("engine", QUANTIZED_ENGINES)
def test_int8_face_detector_finds_the_same_faces_on_real_photos(engine, face):
    skip_unless_installed(engine)
    model, path, calibration, photos = face
    images, description = calibration_images(calibration, "train", model.ssd_config, 100)
    assert len(images) == len(CALIBRATION_PHOTOS) + 1
    quantize(model, ArtifactCache(model, path), engine, images, description)
    result = guard_engine(model, path, engine, load_dataset(photos, "test"), score_threshold=0.3)
    assert result.agreement.compared == 2, result.line()  # the astronaut's and the camera man's
    assert result.agreement.same, result.line()
    assert result.agreement.worst_iou >= 0.9 and result.agreement.worst_score_difference <= 0.05


def test_int8_network_is_stored_beside_the_model_with_what_calibrated_it(shapes):
    skip_unless_installed("onnxruntime")
    model, path, calibration, _ = shapes
    images, description = calibration_images(calibration, "train", model.ssd_config, 4)
    folder = quantize(model, ArtifactCache(model, path), "onnxruntime", images, description)
    assert folder.parent.parent == path.parent / ".ssd_engines"
    record = (folder / "calibration.json").read_text()
    assert calibration in record and '"images": 4' in record
    engine = create_engine(model, "onnxruntime", "int8", model_path=path)
    outputs = engine.run(images[:2])
    assert outputs["boxes"].shape[0] == 2 and "onnxruntime-int8" in engine.describe()


def test_calibration_images_are_spread_over_the_split(shapes):
    model, _, calibration, _ = shapes
    config = model.ssd_config.replace(image_size=(64, 96))
    images, description = calibration_images(calibration, "train", config, 4)
    assert images.shape == (4, 64, 96, 3) and images.dtype == np.uint8
    # 32 images, 4 picked evenly: the first, the last and two between.
    assert description["image_ids"] == ["train_000000", "train_000010", "train_000021",
                                        "train_000031"]  # fmt: skip


def test_quantize_refuses_images_of_another_size(shapes):
    model, path, _, _ = shapes
    with pytest.raises(ValueError, match="calibration images must be"):
        quantize(model, ArtifactCache(model, path), "openvino", np.zeros((2, 8, 8, 3), np.uint8))
