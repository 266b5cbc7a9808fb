"""scripts/train.py end to end: the --quick smoke run, exact resume after a kill, refusal to
resume another run, and a kill during the final save."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import ssd_core  # noqa: F401 - registers the custom layers for load_model
from ssd_core.config import SSDConfig
from ssd_core.data.shapes import write_shapes_dataset
from ssd_core.data.sources import load_dataset
from ssd_core.model import build_model
from ssd_core.presets import SHAPES_CLASSES
from ssd_core.run_folder import DatasetIdentity, prepare_run_folder

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ROOT / "scripts" / "train.py"
ITERATIONS = "optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}


def train_command(out: Path, *extra: str) -> list[str]:
    return [sys.executable, str(TRAIN), "--out", str(out), *extra]


def test_quick_run_trains_and_saves_a_loadable_model(tmp_path: Path) -> None:
    out = tmp_path / "quick"
    result = subprocess.run(
        train_command(out, "--quick"), env=ENV, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert tf.train.latest_checkpoint(str(out / "checkpoints")).endswith("ckpt-6")
    assert (out / "val_metrics.json").exists()
    model = keras.saving.load_model(out / "model.keras")
    assert model.ssd_config.class_names == SHAPES_CLASSES
    assert model.ssd_config.image_size == (96, 160)


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """A 4-image shapes dataset and a 64x96 SSD7 config; the common train.py arguments."""
    root = tmp_path_factory.mktemp("resume")
    write_shapes_dataset(root / "data", num_train=4, num_test=0, seed=3, height=64, width=96)
    config = SSDConfig.preset("ssd7").replace(image_size=(64, 96))
    config.save(root / "config.json")
    return [
        "--config", str(root / "config.json"), "--dataset", f"voc:{root / 'data'}",
        "--split", "train", "--batch-size", "2", "--warmup-steps", "2", "--lr", "0.01",
        "--checkpoint-every", "2", "--log-every", "1",
    ]  # fmt: skip


def checkpoint_values(directory: Path) -> dict[str, np.ndarray]:
    reader = tf.train.load_checkpoint(str(directory))
    names = [n for n in reader.get_variable_to_shape_map() if not n.startswith("_CHECKPOINT")]
    return {name: reader.get_tensor(name) for name in names}


def wait_for_checkpoint(directory: Path, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while tf.train.latest_checkpoint(str(directory)) is None:
        assert process.poll() is None, "train.py exited before writing a checkpoint"
        assert time.monotonic() < deadline, "no checkpoint written in time"
        time.sleep(0.2)


def test_resume_after_kill_continues_with_same_step_and_optimizer_state(
    tmp_path: Path, tiny_setup: list[str]
) -> None:
    killed = tmp_path / "killed"
    process = subprocess.Popen(
        train_command(killed, *tiny_setup, "--steps", "100000"),
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_checkpoint(killed / "checkpoints", process, timeout=240)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    saved = checkpoint_values(killed / "checkpoints")
    saved_step = int(saved[ITERATIONS])
    assert tf.train.latest_checkpoint(str(killed / "checkpoints")).endswith(f"ckpt-{saved_step}")
    assert saved_step >= 2
    final_step = str(saved_step + 2)

    resumed = subprocess.run(
        train_command(killed, *tiny_setup, "--steps", final_step),
        env=ENV, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming at step {saved_step}" in resumed.stderr

    reference = tmp_path / "reference"
    straight = subprocess.run(
        train_command(reference, *tiny_setup, "--steps", final_step),
        env=ENV, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert straight.returncode == 0, straight.stderr[-3000:]

    got = checkpoint_values(killed / "checkpoints")
    want = checkpoint_values(reference / "checkpoints")
    assert got.keys() == want.keys()
    assert int(got[ITERATIONS]) == saved_step + 2
    # SGD momentum slots, one per trainable variable, are part of the compared state
    assert sum(name.startswith("optimizer/_variables/") for name in got) >= 10
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-6, err_msg=name)


def run_folder_of(out: Path, tiny_setup: list[str], dataset_spec: str) -> None:
    """Make `out` the folder of a run of the tiny config on the dataset `dataset_spec`."""
    config = SSDConfig.load(tiny_setup[tiny_setup.index("--config") + 1])
    data = load_dataset(dataset_spec, "train")
    prepare_run_folder(out, config, DatasetIdentity.of(data, dataset_spec, "train"))


def test_resume_of_a_run_on_another_dataset_is_refused_in_one_line(
    tmp_path: Path, tiny_setup: list[str]
) -> None:
    other = tmp_path / "other_data"
    write_shapes_dataset(other, num_train=4, num_test=0, seed=4, height=64, width=96)
    out = tmp_path / "run"
    run_folder_of(out, tiny_setup, f"voc:{other}")
    (out / "model.keras").write_bytes(b"the other run's model")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    result = subprocess.run(
        train_command(out, *tiny_setup, "--steps", "2"),
        env=ENV, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    [message] = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert f"{out} holds another run" in message and "annotations differ" in message
    assert "--overwrite" in message
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


# Run train.py with Keras' Model.save replaced by one that writes part of the file, then gets
# SIGKILLed: a kill during the final save, at the worst moment.
KILLED_SAVE = """
import os, runpy, signal, sys
import keras
def killed_while_saving(self, filepath, *args, **kwargs):
    with open(filepath, "wb") as file:
        file.write(b"PK\\x03\\x04 first bytes of the new model")
        file.flush()
    os.kill(os.getpid(), signal.SIGKILL)
keras.Model.save = killed_while_saving
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_a_kill_during_the_final_save_leaves_the_previous_model(
    tmp_path: Path, tiny_setup: list[str]
) -> None:
    out = tmp_path / "run"
    spec = tiny_setup[tiny_setup.index("--dataset") + 1]
    run_folder_of(out, tiny_setup, spec)
    config = SSDConfig.load(out / "config.json")
    build_model(config, "training").save(out / "model.keras")  # the previous run's model
    previous = (out / "model.keras").read_bytes()
    (out / "checkpoints" / "ckpt-9_temp").mkdir(parents=True)  # an interrupted checkpoint save
    result = subprocess.run(
        [sys.executable, "-c", KILLED_SAVE, *train_command(out, *tiny_setup, "--steps", "2")[1:]],
        env=ENV, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    assert tf.train.latest_checkpoint(str(out / "checkpoints")).endswith("ckpt-2")
    assert (out / "model.keras").read_bytes() == previous
    assert keras.saving.load_model(out / "model.keras").ssd_config == config
    assert not (out / "checkpoints" / "ckpt-9_temp").exists()
    [torn] = [p for p in out.iterdir() if p.name.startswith(".model.partial-")]
    assert torn.suffix == ".keras"  # the interrupted write went to a temporary
