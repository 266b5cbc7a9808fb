"""ssd_core.run_folder: a training folder resumes only the run it was made for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ssd_core.config import SSDConfig
from ssd_core.data.records import DetectionDataset, ImageRecord
from ssd_core.run_folder import DatasetIdentity, RunMismatchError, prepare_run_folder

CONFIG = SSDConfig.preset("ssd7", image_size=(64, 96))


def dataset(box: tuple[float, float, float, float] = (1, 2, 30, 40)) -> DetectionDataset:
    record = ImageRecord(
        image_path="/data/a.png", boxes=[box], labels=[1], difficult=[False], image_id="a"
    )
    return DetectionDataset((record,), CONFIG.class_names)


def identity(data: DetectionDataset, spec: str = "voc:/data") -> DatasetIdentity:
    return DatasetIdentity.of(data, spec, "train")


def test_a_new_folder_records_the_config_and_the_dataset(tmp_path):
    out = tmp_path / "run"
    prepare_run_folder(out, CONFIG, identity(dataset()))
    assert SSDConfig.load(out / "config.json") == CONFIG
    saved = json.loads((out / "run.json").read_text())
    assert saved == {"spec": "voc:/data", "split": "train", "num_images": 1,
                     "sha256": identity(dataset()).sha256}  # fmt: skip


def test_the_same_run_resumes_even_from_another_path(tmp_path):
    prepare_run_folder(tmp_path, CONFIG, identity(dataset()))
    (tmp_path / "model.keras").write_bytes(b"model")
    prepare_run_folder(tmp_path, CONFIG, identity(dataset(), spec="voc:/mnt/moved"))
    assert (tmp_path / "model.keras").read_bytes() == b"model"


def test_another_config_is_refused_and_the_run_kept(tmp_path):
    prepare_run_folder(tmp_path, CONFIG, identity(dataset()))
    (tmp_path / "model.keras").write_bytes(b"model")
    other = CONFIG.replace(image_size=(128, 192))
    with pytest.raises(RunMismatchError, match=r"another model \(differs in image_size\)"):
        prepare_run_folder(tmp_path, other, identity(dataset()))
    assert SSDConfig.load(tmp_path / "config.json") == CONFIG
    assert (tmp_path / "model.keras").read_bytes() == b"model"


def test_another_dataset_is_refused(tmp_path):
    prepare_run_folder(tmp_path, CONFIG, identity(dataset()))
    with pytest.raises(RunMismatchError, match="annotations differ"):
        prepare_run_folder(tmp_path, CONFIG, identity(dataset(box=(1, 2, 30, 41))))


def test_a_folder_of_other_files_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RunMismatchError, match=r"no config.json but holds \['notes.txt'\]"):
        prepare_run_folder(tmp_path, CONFIG, identity(dataset()))
    assert not (tmp_path / "config.json").exists()


def test_overwrite_deletes_only_the_previous_run_outputs(tmp_path):
    prepare_run_folder(tmp_path, CONFIG, identity(dataset()))
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "ckpt-4.index").write_bytes(b"x")
    (tmp_path / "model.keras").write_bytes(b"model")
    (tmp_path / "notes.txt").write_text("mine")
    other = CONFIG.replace(image_size=(128, 192))
    prepare_run_folder(tmp_path, other, identity(dataset()), overwrite=True)
    assert SSDConfig.load(tmp_path / "config.json") == other
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "notes.txt", "run.json"]


def test_leftovers_of_an_interrupted_run_are_removed(tmp_path):
    prepare_run_folder(tmp_path, CONFIG, identity(dataset()))
    partial = tmp_path / "checkpoints" / "ckpt-6_temp"
    partial.mkdir(parents=True)
    (partial / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"shard")
    (tmp_path / "checkpoints" / "ckpt-4.index").write_bytes(b"kept")
    (tmp_path / ".model.partial-0a1b2c3d.keras").write_bytes(b"torn")
    prepare_run_folder(tmp_path, CONFIG, identity(dataset()))
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["ckpt-4.index"]
    assert not any(p.name.startswith(".") for p in Path(tmp_path).iterdir())
