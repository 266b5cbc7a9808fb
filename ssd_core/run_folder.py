"""A training run's folder, and the checks that keep one run from resuming or overwriting another.

Layout of `scripts/train.py --out DIR`: `config.json` (the SSDConfig), `run.json` (which dataset
it trains on: spec, split, image count and a SHA-256 of the annotations), `checkpoints/`,
`logs/`, `val_metrics.json` and, at the end, `model.keras`. Running again with the same folder
resumes only if the config and the dataset are the ones it was made for.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from ssd_core.atomic_write import remove_stale_temporaries, write_text
from ssd_core.config import SSDConfig
from ssd_core.data.records import DetectionDataset
from ssd_core.input_files import InputFileError

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
RUN_FILE = "run.json"
CHECKPOINT_DIR = "checkpoints"
# Everything a run writes; `--overwrite` deletes these and nothing else.
RUN_OUTPUTS = (CONFIG_FILE, RUN_FILE, CHECKPOINT_DIR, "logs", "val_metrics.json", "model.keras")


class RunMismatchError(ValueError):
    """The folder holds another run (other config or dataset), or is not a run folder."""


@dataclass(frozen=True)
class DatasetIdentity:
    """What a run trains on. `sha256` covers class names, image ids, boxes and labels, so the
    same data found under another path is the same dataset."""

    spec: str
    split: str
    num_images: int
    sha256: str

    @classmethod
    def of(cls, dataset: DetectionDataset, spec: str, split: str) -> DatasetIdentity:
        digest = hashlib.sha256(json.dumps(list(dataset.class_names)).encode())
        for record in dataset.records:
            digest.update(record.image_id.encode() + b"\0")
            digest.update(record.boxes.astype("<f4").tobytes())
            digest.update(record.labels.astype("<i4").tobytes())
        return cls(spec, split, len(dataset.records), digest.hexdigest())

    def describe(self) -> str:
        return f"{self.spec!r} split {self.split!r} ({self.num_images} images)"


def prepare_run_folder(
    out: Path, config: SSDConfig, dataset: DatasetIdentity, overwrite: bool = False
) -> None:
    """Make `out` the folder of a run of `config` on `dataset`: a missing or empty folder starts
    one, the folder of the same run resumes it.

    Also removes what an interrupted run left: temporaries of atomic writes and the
    `ckpt-N_temp` folders of a checkpoint save that did not finish.

    Raises:
        RunMismatchError: `out` holds a run of another config or dataset, or files of no run;
            with `overwrite`, that run's outputs (`RUN_OUTPUTS`) are deleted instead.
    """
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)
    remove_partial_checkpoints(out / CHECKPOINT_DIR)
    problems = _mismatches(out, config, dataset)
    if problems and not overwrite:
        raise RunMismatchError(
            f"{out} holds another run: {'; '.join(problems)}. Choose another --out, or pass "
            "--overwrite to delete that run's checkpoints, logs and model"
        )
    if problems:
        logger.warning(
            "--overwrite: deleting the previous run in %s (%s)", out, "; ".join(problems)
        )
        for name in RUN_OUTPUTS:
            path = out / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    write_text(out / CONFIG_FILE, config.to_json())
    write_text(out / RUN_FILE, json.dumps(asdict(dataset), indent=2))


def remove_partial_checkpoints(directory: Path) -> None:
    """Delete `ckpt-N_temp` folders: shards of a checkpoint save that was interrupted before
    TensorFlow merged them (finished checkpoints never have them)."""
    if not directory.is_dir():
        return
    for path in directory.glob("*_temp"):
        if path.is_dir():
            logger.info("removing %s, left by an interrupted checkpoint save", path)
            shutil.rmtree(path)


def _mismatches(out: Path, config: SSDConfig, dataset: DatasetIdentity) -> list[str]:
    """Why `out` cannot hold the run of (config, dataset); empty if it can."""
    if not (out / CONFIG_FILE).exists():
        leftovers = sorted(p.name for p in out.iterdir())
        if leftovers:
            return [f"it has no {CONFIG_FILE} but holds {leftovers[:5]}, so it is no run folder"]
        return []
    try:
        saved = SSDConfig.load(out / CONFIG_FILE)
    except InputFileError as error:
        return [f"its {CONFIG_FILE} is unreadable ({error.problem})"]
    problems = []
    if saved != config:
        old, new = saved.to_dict(), config.to_dict()
        fields = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        problems.append(f"its {CONFIG_FILE} is another model (differs in {', '.join(fields)})")
    previous = _saved_dataset(out / RUN_FILE)
    if previous is None:
        logger.warning("%s has no readable %s: cannot check its dataset", out, RUN_FILE)
    elif previous.sha256 != dataset.sha256:
        problems.append(
            f"it trains on dataset {previous.describe()}, not {dataset.describe()} "
            "(annotations differ)"
        )
    return problems


def _saved_dataset(path: Path) -> DatasetIdentity | None:
    try:
        return DatasetIdentity(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None
