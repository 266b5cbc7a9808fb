"""`fit`: one training run from dataset specs to `OUT/model.keras`.

It owns every decision of a run: the distribution strategy (all GPUs of the host through
`MirroredStrategy`, `MultiWorkerMirroredStrategy` across hosts), mixed precision, the optimizer
and its schedule, resuming from the latest checkpoint, and the checkpoint, log and validation
cadence. Batch `s` is a pure function of `(seed, s)` (`ssd_core.data.pipeline`), so a killed run
resumed from its checkpoint continues exactly. Validation runs the evaluation path
(`ssd_core.evaluation.predict`, the service's inference path) and reports VOC07 mAP.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from ssd_core.atomic_write import atomic_path, write_text
from ssd_core.config import SSDConfig
from ssd_core.data.pipeline import training_dataset
from ssd_core.data.records import DatasetError, ImageRecord
from ssd_core.data.sources import load_dataset
from ssd_core.input_files import InputFileError, describe, require_file
from ssd_core.losses import SSDLoss
from ssd_core.model import build_model
from ssd_core.run_folder import DatasetIdentity, prepare_run_folder
from ssd_core.training.schedule import WarmupPiecewiseDecay
from ssd_core.training.summaries import write_scalars
from ssd_core.training.trainer import Trainer, make_checkpoint_manager

logger = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "adam")
MIXED_PRECISION = ("auto", "on", "off")
StepCallback = Callable[[int, dict[str, float]], None]


@dataclass(frozen=True)
class FitSettings:
    """How to train; the defaults are the paper recipe (Caffe `ssd_pascal.py`).

    Attributes:
        steps: optimizer steps of the whole run (a resumed run stops there too).
        batch_size: the global batch, split over the replicas.
        optimizer: "sgd" (momentum, the recipe) or "adam" (from scratch on small data).
        learning_rate, lr_boundaries, warmup_steps: `WarmupPiecewiseDecay` (x0.1 at each
            boundary, a linear warm-up from 0.1x).
        momentum: SGD momentum.
        weight_decay: L2 on kernels (`ssd_core.training.regularisation`).
        seed: weights, shuffling and augmentation.
        mixed_precision: "auto" (on with a GPU), "on" or "off".
        multi_worker: `MultiWorkerMirroredStrategy` over the hosts of `TF_CONFIG`.
        channel_swap_prob: augmentation's channel swap probability (0: the exact Caffe recipe).
        checkpoint_every, keep_checkpoints, log_every, val_every: cadence in steps.
        max_val_images: the first this many validation images are evaluated.
    """

    steps: int = 120_000
    batch_size: int = 32
    optimizer: str = "sgd"
    learning_rate: float = 1e-3
    lr_boundaries: tuple[int, ...] = (80_000, 100_000)
    warmup_steps: int = 500
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0
    mixed_precision: str = "auto"
    multi_worker: bool = False
    channel_swap_prob: float = 0.5
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    log_every: int = 20
    val_every: int = 5000
    max_val_images: int = 500

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(
                f"mixed_precision must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}"
            )
        for name in ("steps", "batch_size", "checkpoint_every", "log_every", "val_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class DataSpec:
    """Where the images come from (`ssd_core.data.load_dataset` specs).

    Attributes:
        dataset, split: the training data.
        val_dataset, val_split: the validation data (None: `dataset`); no `val_split`, no
            validation.
    """

    dataset: str
    split: str = "trainval"
    val_dataset: str | None = None
    val_split: str | None = None


def fit(
    config: SSDConfig,
    data: DataSpec,
    out: Path,
    settings: FitSettings = FitSettings(),
    *,
    weights: Path | None = None,
    overwrite: bool = False,
    on_step: StepCallback | None = None,
) -> Path:
    """Train `config` on `data` in the run folder `out`, resuming the run it holds.

    Writes `out/model.keras` (atomically; config and class names inside), `config.json`,
    `run.json`, `checkpoints/`, TensorBoard scalars in `logs/` and `val_metrics.json`.

    Args:
        config: the model; its class names must be the dataset's.
        data: training and validation datasets.
        out: the run folder (see `ssd_core.run_folder`).
        settings: the recipe and the cadence.
        weights: initial weights (`.keras` / `.weights.h5` of the same architecture).
        overwrite: delete a run of another config or dataset found in `out`.
        on_step: called after every step with the step and its losses (a progress bar).

    Returns:
        The path of the saved model.

    Raises:
        ValueError, OSError: unusable inputs (`InputFileError`, `DatasetError`,
            `RunMismatchError`, ...), the message naming the file or folder.
        NonFiniteLossError: the loss became NaN or infinite.
    """
    keras.utils.set_random_seed(settings.seed)
    with _precision(settings.mixed_precision):
        strategy = _strategy(settings.multi_worker)
        train_data = load_dataset(data.dataset, data.split)
        if config.class_names != train_data.class_names:
            raise DatasetError(
                f"the model's classes {list(config.class_names)} differ from the dataset's "
                f"{list(train_data.class_names)}; write a --config with the dataset's class_names"
            )
        validation = _validation_records(data, config, settings.max_val_images)
        logger.info(
            "training %s (%s) on %d images, %d replica(s); settings: %s",
            config.name,
            config.image_size,
            len(train_data.records),
            strategy.num_replicas_in_sync,
            json.dumps(asdict(settings)),
        )
        identity = DatasetIdentity.of(train_data, data.dataset, data.split)
        prepare_run_folder(out, config, identity, overwrite=overwrite)
        trainer = _build_trainer(config, settings, strategy, weights)
        _train(trainer, list(train_data.records), validation, out, settings, on_step)
    return _save(trainer.model, out / "model.keras")


@contextlib.contextmanager
def _precision(mode: str) -> Iterator[None]:
    """Keras' global dtype policy for the run: mixed_float16 if "on", or "auto" with a GPU."""
    previous = keras.mixed_precision.global_policy()
    if mode == "on" or (mode == "auto" and tf.config.list_physical_devices("GPU")):
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _strategy(multi_worker: bool) -> tf.distribute.Strategy:
    """Across hosts if asked, over all GPUs of this host if more than one, else the default."""
    if multi_worker:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def _validation_records(data: DataSpec, config: SSDConfig, limit: int) -> list[ImageRecord]:
    if not data.val_split:
        return []
    dataset = load_dataset(data.val_dataset or data.dataset, data.val_split, config.class_names)
    return list(dataset.records[:limit])


def _build_trainer(
    config: SSDConfig,
    settings: FitSettings,
    strategy: tf.distribute.Strategy,
    weights: Path | None,
) -> Trainer:
    schedule = WarmupPiecewiseDecay(
        settings.learning_rate, settings.lr_boundaries, warmup_steps=settings.warmup_steps
    )
    with strategy.scope():
        model = build_model(config, "training")
        if weights is not None:
            _load_weights(model, weights)
        optimizer: keras.optimizers.Optimizer
        if settings.optimizer == "adam":
            optimizer = keras.optimizers.Adam(learning_rate=schedule)
        else:
            optimizer = keras.optimizers.SGD(learning_rate=schedule, momentum=settings.momentum)
        if keras.mixed_precision.global_policy().name == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        return Trainer(model, optimizer, SSDLoss(), settings.weight_decay, strategy)


def _load_weights(model: keras.Model, path: Path) -> None:
    """`model.load_weights(path)` with `InputFileError` for a missing, truncated or foreign file."""
    require_file(path, "a .keras or .weights.h5 file")
    try:
        model.load_weights(path)
    except (zipfile.BadZipFile, EOFError, OSError, KeyError, ValueError) as error:
        raise InputFileError(path, f"cannot load weights from it ({describe(error)})") from error
    logger.info("loaded initial weights from %s", path)


def _train(
    trainer: Trainer,
    records: list[ImageRecord],
    validation: Sequence[ImageRecord],
    out: Path,
    settings: FitSettings,
    on_step: StepCallback | None,
) -> None:
    """Steps until `settings.steps`, with checkpoints, logs and validation at their cadence."""
    manager = make_checkpoint_manager(trainer, out / "checkpoints", settings.keep_checkpoints)
    start = trainer.step
    if start:
        logger.info("resuming at step %d", start)
    dataset = training_dataset(
        records,
        trainer.model.ssd_config,
        settings.batch_size,
        seed=settings.seed,
        start_index=start * settings.batch_size,
        channel_swap_prob=settings.channel_swap_prob,
    )
    batches = iter(trainer.strategy.experimental_distribute_dataset(dataset))
    writer = tf.summary.create_file_writer(str(out / "logs"))
    started = time.monotonic()
    while trainer.step < settings.steps:
        losses = trainer.train_step(*next(batches))
        step = trainer.step
        if on_step is not None:
            on_step(step, losses)
        last = step == settings.steps
        if step % settings.log_every == 0 or last:
            write_scalars(
                writer, {**losses, "learning_rate": trainer.learning_rate()}, step, "train"
            )
        if step % settings.checkpoint_every == 0 or last:
            manager.save(checkpoint_number=step)
        if validation and (step % settings.val_every == 0 or last):
            _validate(trainer.model, validation, step, out, writer)
    logger.info("trained to step %d (%.0f s this run)", trainer.step, time.monotonic() - started)


def _validate(
    model: keras.Model,
    records: Sequence[ImageRecord],
    step: int,
    out: Path,
    writer: tf.summary.SummaryWriter,
) -> None:
    """VOC07 mAP of `model` on `records` through the evaluation path; logged and written."""
    summary = voc07_summary(model, records)
    m_ap = summary["mAP"] or 0.0
    logger.info("step %d: VOC07 mAP %.4f on %d images", step, m_ap, len(records))
    write_scalars(writer, {"mAP": m_ap}, step, "val")
    write_text(out / "val_metrics.json", json.dumps({"step": step, **summary}, indent=2))


def voc07_summary(model: keras.Model, records: Sequence[ImageRecord]) -> dict[str, Any]:
    """VOC07 11-point mAP and per-class AP of `model` (either mode) on `records`, measured as
    `scripts/evaluate.py` measures it (`ssd_core.evaluation.predict.predict_dataset`)."""
    from ssd_core.evaluation.predict import predict_dataset
    from ssd_core.evaluation.voc_eval import evaluate_voc
    from ssd_core.inference import Predictor

    detections = predict_dataset(Predictor.from_model(model), records)
    truth = {record.image_id: record.ground_truth() for record in records}
    result = evaluate_voc(detections, truth, metric="voc07")
    return result.to_dict(model.ssd_config.class_names)


def _save(model: keras.Model, path: Path) -> Path:
    with atomic_path(path) as partial:  # a kill here leaves the previous model.keras
        model.save(partial)
    logger.info("model saved to %s", path)
    return path
