"""scripts/convert_weights.py: file in, `.keras` model out, with sub-sampling and clear errors."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

import ssd_core  # noqa: F401  (registers the custom layers for load_model)
from ssd_core import DecoderConfig, SSDConfig, build_model
from ssd_core.weights import write_caffemodel

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "convert_weights.py"


def load_script():
    spec = importlib.util.spec_from_file_location("convert_weights", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(*argv: str) -> int:
    script = load_script()
    return script.main(script.build_parser().parse_args([str(a) for a in argv]))


def random_keras_weights(preset: str, seed: int) -> dict[str, list[np.ndarray]]:
    """Random weights in Keras layout for every weighted layer of `preset` (BN variances > 0)."""
    model = build_model(SSDConfig.preset(preset))
    rng = np.random.default_rng(seed)
    return {
        layer.name: [rng.uniform(0.5, 1.5, w.shape).astype(np.float32) for w in layer.weights]
        for layer in model.layers
        if layer.weights
    }


def write_keras2_h5(path: Path, weights: dict[str, list[np.ndarray]]) -> None:
    """Keras 2 `save_weights` layout; BN weights named as Keras 2 names them."""
    names = {
        2: ["kernel:0", "bias:0"],
        4: ["gamma:0", "beta:0", "moving_mean:0", "moving_variance:0"],
    }
    with h5py.File(path, "w") as file:
        file.attrs["layer_names"] = [name.encode() for name in weights]
        for layer, arrays in weights.items():
            weight_names = [f"{layer}/{n}" for n in names[len(arrays)]]
            file.create_group(layer).attrs["weight_names"] = [n.encode() for n in weight_names]
            for weight_name, array in zip(weight_names, arrays, strict=True):
                file[layer].create_dataset(weight_name, data=array)


def test_ssd_keras_file_converts_to_a_loadable_keras_model(tmp_path):
    weights = random_keras_weights("ssd7", seed=0)
    write_keras2_h5(tmp_path / "ssd7.h5", weights)
    assert (
        run(
            "--from",
            "ssd_keras",
            tmp_path / "ssd7.h5",
            "--preset",
            "ssd7",
            "--out",
            tmp_path / "m.keras",
        )
        == 0
    )
    model = keras.saving.load_model(tmp_path / "m.keras")
    assert model.ssd_config == SSDConfig.preset("ssd7")
    for name in ("conv1", "bn3", "conv7_mbox_conf"):
        for loaded, written in zip(model.get_layer(name).get_weights(), weights[name], strict=True):
            np.testing.assert_array_equal(loaded, written)


def test_keep_classes_slices_conf_heads_of_the_converted_model(tmp_path):
    weights = random_keras_weights("ssd7", seed=1)
    write_keras2_h5(tmp_path / "ssd7.h5", weights)
    argv = ["--from", "ssd_keras", tmp_path / "ssd7.h5", "--preset", "ssd7"]
    assert run(*argv, "--keep-classes", "ring,square", "--out", tmp_path / "m.keras") == 0
    model = keras.saving.load_model(tmp_path / "m.keras")
    assert model.ssd_config.class_names == ("ring", "square")
    assert SSDConfig.load(tmp_path / "m.json") == model.ssd_config
    # SSD7: 6 classes (background, circle, square, triangle, star, ring), 4 boxes per location;
    # keep labels 0, 5, 2 -> channels box * 6 + label.
    channels = [box * 6 + label for box in range(4) for label in (0, 5, 2)]
    kernel, bias = model.get_layer("conv5_mbox_conf").get_weights()
    np.testing.assert_array_equal(kernel, weights["conv5_mbox_conf"][0][..., channels])
    np.testing.assert_array_equal(bias, weights["conv5_mbox_conf"][1][channels])


def test_caffe_file_with_a_missing_layer_fails_naming_it(tmp_path, caplog):
    write_caffemodel(
        tmp_path / "partial.caffemodel", {"conv1_1": [np.zeros((64, 3, 3, 3)), np.zeros(64)]}
    )
    argv = ["--from", "caffe", tmp_path / "partial.caffemodel", "--preset", "ssd300_voc"]
    with caplog.at_level(logging.ERROR, logger="convert_weights"):
        assert run(*argv, "--out", tmp_path / "m.keras") == 2
    assert "layer 'conv1_2' is missing" in caplog.text
    assert not (tmp_path / "m.keras").exists()


def test_unknown_keep_class_fails_with_the_available_names(tmp_path, caplog):
    write_keras2_h5(tmp_path / "ssd7.h5", random_keras_weights("ssd7", seed=2))
    argv = [
        "--from",
        "ssd_keras",
        tmp_path / "ssd7.h5",
        "--preset",
        "ssd7",
        "--keep-classes",
        "car",
    ]
    with caplog.at_level(logging.ERROR, logger="convert_weights"):
        assert run(*argv, "--out", tmp_path / "m.keras") == 2
    assert "classes ['car'] are not in model 'ssd7'" in caplog.text


def test_unknown_source_format_is_rejected(tmp_path):
    assert (
        run("--from", "darknet", tmp_path / "x", "--preset", "ssd7", "--out", tmp_path / "m.keras")
        == 2
    )


def test_an_existing_json_of_another_config_is_kept_and_nothing_is_written(tmp_path, caplog):
    write_keras2_h5(tmp_path / "ssd7.h5", random_keras_weights("ssd7", seed=3))
    theirs = SSDConfig.preset("ssd7", image_size=(96, 160))
    theirs.save(tmp_path / "m.json")
    before = (tmp_path / "m.json").read_bytes()
    argv = ["--from", "ssd_keras", tmp_path / "ssd7.h5", "--preset", "ssd7"]
    with caplog.at_level(logging.ERROR, logger="convert_weights"):
        assert run(*argv, "--out", tmp_path / "m.keras") == 2
    assert f"{tmp_path / 'm.json'}: exists and holds another config (differs in image_size)" in (
        caplog.text
    )
    assert (tmp_path / "m.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "ssd7.h5"]


def test_converting_again_to_the_same_config_replaces_the_model(tmp_path):
    write_keras2_h5(tmp_path / "ssd7.h5", random_keras_weights("ssd7", seed=4))
    argv = ["--from", "ssd_keras", tmp_path / "ssd7.h5", "--preset", "ssd7"]
    assert run(*argv, "--out", tmp_path / "m.keras") == 0
    assert run(*argv, "--out", tmp_path / "m.keras") == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.keras", "ssd7.h5"]
    assert SSDConfig.load(tmp_path / "m.json") == SSDConfig.preset("ssd7")


def truncated_h5(path: Path) -> None:
    write_keras2_h5(path, random_keras_weights("ssd7", seed=5))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def not_hdf5(path: Path) -> None:
    path.write_text("layer_names: conv1, conv2\n")


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (truncated_h5, "not a readable HDF5 file (truncated or another format"),
        (not_hdf5, "not a readable HDF5 file (truncated or another format"),
        (lambda path: None, "no such file (expected a ssd_keras weight file)"),
        (lambda path: path.write_bytes(b""), "empty file (expected a ssd_keras weight file)"),
    ],
    ids=["truncated", "not-hdf5", "missing", "empty"],
)
def test_an_unreadable_h5_is_one_error_naming_the_file(tmp_path, caplog, make, problem):
    source = tmp_path / "weights.h5"
    make(source)
    argv = ["--from", "ssd_keras", source, "--preset", "ssd7", "--out", tmp_path / "m.keras"]
    with caplog.at_level(logging.ERROR, logger="convert_weights"):
        assert run(*argv) == 2
    [message] = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert message.startswith(f"{source}: {problem}")
    assert not (tmp_path / "m.keras").exists()


def test_a_truncated_caffemodel_is_one_error_naming_the_file(tmp_path, caplog):
    source = tmp_path / "net.caffemodel"
    write_caffemodel(source, {"conv1_1": [np.zeros((64, 3, 3, 3)), np.zeros(64)]})
    source.write_bytes(source.read_bytes()[:-7])
    argv = ["--from", "caffe", source, "--preset", "ssd300_voc", "--out", tmp_path / "m.keras"]
    with caplog.at_level(logging.ERROR, logger="convert_weights"):
        assert run(*argv) == 2
    assert f"{source}: not a Caffe NetParameter file" in caplog.text


def test_face_detector_converts_from_its_prototxt_alone(tmp_path):
    from tests.reference.face_files import face_detector_files

    prototxt, caffemodel = face_detector_files()
    out = tmp_path / "face.keras"
    assert run("--from", "caffe", caffemodel, "--prototxt", prototxt, "--out", out) == 0
    model = keras.saving.load_model(out)
    assert model.ssd_config == SSDConfig.preset("ssd300_res10_face")
    # The prototxt's DetectionOutput: Caffe's defaults (0.01, 0.45, 400, 200), unclipped.
    assert model.decoder_config == DecoderConfig(clip=False)
    blobs = ssd_core.weights.read_caffemodel(caffemodel)
    np.testing.assert_array_equal(
        model.get_layer("conv1_h").get_weights()[0], blobs["conv1_h"][0].transpose(2, 3, 1, 0)
    )
    assert SSDConfig.load(tmp_path / "face.json") == model.ssd_config


def test_prototxt_flags_without_prototxt_are_refused(tmp_path, caplog):
    with caplog.at_level(logging.ERROR, logger="convert_weights"):
        code = run("--from", "caffe", tmp_path / "x.caffemodel", "--preset", "ssd300_voc",
                   "--class-names", "a,b", "--out", tmp_path / "x.keras")  # fmt: skip
    assert code == 2
    assert "--pixel-mean and --class-names go with --prototxt" in caplog.text


def test_pixel_mean_and_class_names_override_the_family_defaults(tmp_path):
    from tests.reference.face_files import face_detector_files

    prototxt, caffemodel = face_detector_files()
    out = tmp_path / "face.keras"
    argv = ["--from", "caffe", caffemodel, "--prototxt", prototxt, "--out", out]
    assert run(*argv, "--pixel-mean", "120,170,100", "--class-names", "head") == 0
    config = SSDConfig.load(tmp_path / "face.json")
    assert (config.pixel_mean, config.class_names) == ((120.0, 170.0, 100.0), ("head",))
