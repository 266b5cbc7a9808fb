"""Train an SSD model; the output `.keras` file (config and class names inside) is what the
service serves.

Examples:
    # the original SSD300 recipe on VOC07+12 trainval (SGD 0.9, lr 1e-3, steps 80k/100k, batch 32)
    python scripts/train.py --preset ssd300_voc --dataset voc:VOC2007,voc:VOC2012 \\
        --split trainval --weights models/vgg16_base.keras --out runs/ssd300 \\
        --val-dataset voc:VOC2007 --val-split test
    # a custom model on a CSV dataset, schedule shortened 10x
    python scripts/train.py --config my_ssd.json --dataset csv:boxes.csv:images \\
        --schedule-scale 0.1 --out runs/custom
    # smoke run: generates a tiny shapes dataset and trains an SSD7 for a few steps
    python scripts/train.py --quick --out /tmp/quick

Resume: run the same command again with the same --out; training continues from the latest
checkpoint (model, optimizer and step; the input pipeline is addressed by step, so the batches
continue exactly). A folder holding a run of another config or dataset (or files of no run) is
refused unless --overwrite, which deletes that run's outputs. Outputs are written atomically
(a kill leaves the previous file); user errors print one line naming the file and exit 2.
Multi-GPU: all GPUs of the host are used through MirroredStrategy; for
several hosts set TF_CONFIG on each and pass --multi-worker (MultiWorkerMirroredStrategy).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from tqdm import tqdm  # noqa: E402

from ssd_core.atomic_write import atomic_path, write_text  # noqa: E402
from ssd_core.config import SSDConfig  # noqa: E402
from ssd_core.data.pipeline import training_dataset  # noqa: E402
from ssd_core.data.records import DatasetError  # noqa: E402
from ssd_core.data.sources import load_dataset  # noqa: E402
from ssd_core.evaluation.voc_eval import evaluate_voc  # noqa: E402
from ssd_core.input_files import InputFileError, describe, require_file  # noqa: E402
from ssd_core.losses import SSDLoss  # noqa: E402
from ssd_core.model import build_model, to_inference  # noqa: E402
from ssd_core.run_folder import DatasetIdentity, prepare_run_folder  # noqa: E402
from ssd_core.training import (  # noqa: E402
    NonFiniteLossError,
    Trainer,
    WarmupPiecewiseDecay,
    detect,
    make_checkpoint_manager,
    write_scalars,
)

logger = logging.getLogger("train")

# Setup errors caused by the user's files and arguments (missing, truncated or mismatched
# inputs, a folder of another run): one message, exit status 2. InputFileError, DatasetError,
# WeightFileError and RunMismatchError are ValueErrors.
USER_ERRORS = (ValueError, OSError)

QUICK_IMAGE_SIZE = (96, 160)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    model = parser.add_argument_group("model")
    model.add_argument("--preset", default="ssd300_voc", help="SSDConfig preset name")
    model.add_argument("--config", type=Path, help="SSDConfig JSON file (overrides --preset)")
    model.add_argument("--weights", type=Path, help="initial weights (.keras/.weights.h5)")
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", help="dataset spec(s): voc:DIR, coco:FILE.json[:DIR], csv:...")
    data.add_argument("--split", default="trainval")
    data.add_argument("--val-dataset", help="validation spec (default: --dataset)")
    data.add_argument("--val-split", help="validation split; no validation if unset")
    data.add_argument("--val-every", type=int, default=5000, help="steps between VOC mAP runs")
    data.add_argument("--max-val-images", type=int, default=500)
    data.add_argument("--channel-swap-prob", type=float, default=0.5)
    optim = parser.add_argument_group("optimisation (defaults: the SSD paper recipe)")
    optim.add_argument("--batch-size", type=int, default=32, help="global batch size")
    optim.add_argument("--steps", type=int, default=120_000)
    optim.add_argument("--lr", type=float, default=1e-3)
    optim.add_argument("--lr-steps", default="80000,100000", help="lr x0.1 at these steps")
    optim.add_argument("--schedule-scale", type=float, default=1.0, help="scales --lr-steps")
    optim.add_argument("--warmup-steps", type=int, default=500)
    optim.add_argument("--momentum", type=float, default=0.9)
    optim.add_argument(
        "--optimizer",
        choices=("sgd", "adam"),
        default="sgd",
        help="sgd: the paper recipe; adam: faster from scratch on small data (SSD7)",
    )
    optim.add_argument("--weight-decay", type=float, default=5e-4)
    optim.add_argument("--seed", type=int, default=0)
    optim.add_argument(
        "--mixed-precision", choices=("auto", "on", "off"), default="auto", help="auto: on GPU"
    )
    optim.add_argument("--multi-worker", action="store_true", help="MultiWorkerMirroredStrategy")
    out = parser.add_argument_group("output")
    out.add_argument("--out", type=Path, required=True, help="run directory (resumes if present)")
    out.add_argument(
        "--overwrite",
        action="store_true",
        help="if --out holds a run of another config or dataset, delete it and start afresh",
    )
    out.add_argument("--checkpoint-every", type=int, default=1000)
    out.add_argument("--keep-checkpoints", type=int, default=3)
    out.add_argument("--log-every", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="tiny generated dataset, few steps")
    return parser


def apply_quick(args: argparse.Namespace) -> None:
    """--quick: an SSD7 on a handful of freshly generated shapes images, a few steps."""
    from ssd_core.data.shapes import write_shapes_dataset

    root = Path(tempfile.mkdtemp(prefix="ssd_quick_"))
    height, width = QUICK_IMAGE_SIZE
    write_shapes_dataset(root, num_train=8, num_test=4, seed=args.seed, height=height, width=width)
    args.quick_root = root
    args.dataset, args.split = f"voc:{root}", "train"
    args.val_dataset, args.val_split = f"voc:{root}", "test"
    args.config, args.preset = None, "ssd7"
    args.quick_image_size = QUICK_IMAGE_SIZE
    args.batch_size = min(args.batch_size, 4)
    args.steps = min(args.steps, 6)
    args.val_every = args.steps
    args.checkpoint_every = min(args.checkpoint_every, 3)
    args.warmup_steps = min(args.warmup_steps, 2)
    args.log_every = 1


def resolve_config(args: argparse.Namespace, class_names: tuple[str, ...]) -> SSDConfig:
    if args.config is not None:
        config = SSDConfig.load(args.config)
    else:
        config = SSDConfig.preset(args.preset)
    if getattr(args, "quick_image_size", None):
        config = config.replace(image_size=args.quick_image_size)
    if config.class_names != tuple(class_names):
        raise DatasetError(
            f"the model's classes {list(config.class_names)} differ from the dataset's "
            f"{list(class_names)}; write a --config with the dataset's class_names"
        )
    return config


def choose_strategy(args: argparse.Namespace) -> tf.distribute.Strategy:
    if args.multi_worker:
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def build_trainer(
    args: argparse.Namespace, config: SSDConfig, strategy: tf.distribute.Strategy
) -> Trainer:
    boundaries = [round(int(s) * args.schedule_scale) for s in args.lr_steps.split(",") if s]
    schedule = WarmupPiecewiseDecay(args.lr, boundaries, warmup_steps=args.warmup_steps)
    with strategy.scope():
        model = build_model(config, "training")
        if args.weights is not None:
            load_initial_weights(model, args.weights)
        if args.optimizer == "adam":
            optimizer = keras.optimizers.Adam(learning_rate=schedule)
        else:
            optimizer = keras.optimizers.SGD(learning_rate=schedule, momentum=args.momentum)
        if keras.mixed_precision.global_policy().name == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        return Trainer(model, optimizer, SSDLoss(), args.weight_decay, strategy)


def load_initial_weights(model: keras.Model, path: Path) -> None:
    """`model.load_weights(path)` with `InputFileError` for a missing, truncated or foreign file."""
    require_file(path, "a .keras or .weights.h5 file")
    try:
        model.load_weights(path)
    except (zipfile.BadZipFile, EOFError, OSError, KeyError, ValueError) as error:
        raise InputFileError(path, f"cannot load weights from it ({describe(error)})") from error
    logger.info("loaded initial weights from %s", path)


def validate(trainer: Trainer, records: list, class_names: tuple[str, ...]) -> dict:
    inference = to_inference(trainer.model)
    detections = detect(inference, records)
    truth = {r.image_id: r.ground_truth() for r in records}
    result = evaluate_voc(detections, truth, metric="voc07")
    return result.to_dict(class_names)


def train(args: argparse.Namespace) -> int:
    keras.utils.set_random_seed(args.seed)
    if args.mixed_precision == "on" or (
        args.mixed_precision == "auto" and tf.config.list_physical_devices("GPU")
    ):
        keras.mixed_precision.set_global_policy("mixed_float16")
    strategy = choose_strategy(args)
    try:
        train_data = load_dataset(args.dataset, args.split)
        config = resolve_config(args, train_data.class_names)
        val_records = []
        if args.val_split:
            val_data = load_dataset(
                args.val_dataset or args.dataset, args.val_split, config.class_names
            )
            val_records = list(val_data.records[: args.max_val_images])
        logger.info(
            "training %s (%s) on %d images, %d replica(s); settings: %s",
            config.name,
            config.image_size,
            len(train_data.records),
            strategy.num_replicas_in_sync,
            json.dumps({k: str(v) for k, v in vars(args).items()}),
        )
        identity = DatasetIdentity.of(train_data, args.dataset, args.split)
        prepare_run_folder(args.out, config, identity, overwrite=args.overwrite)
        trainer = build_trainer(args, config, strategy)
    except USER_ERRORS as error:
        logger.error("%s", error)
        return 2
    manager = make_checkpoint_manager(trainer, args.out / "checkpoints", args.keep_checkpoints)
    start = trainer.step
    if start:
        logger.info("resuming at step %d", start)
    dataset = training_dataset(
        list(train_data.records),
        config,
        args.batch_size,
        seed=args.seed,
        start_index=start * args.batch_size,
        channel_swap_prob=args.channel_swap_prob,
    )
    batches = iter(strategy.experimental_distribute_dataset(dataset))
    writer = tf.summary.create_file_writer(str(args.out / "logs"))
    progress = tqdm(total=args.steps, initial=start, desc="train", dynamic_ncols=True)
    started = time.monotonic()
    while trainer.step < args.steps:
        images, targets = next(batches)
        try:
            losses = trainer.train_step(images, targets)
        except NonFiniteLossError as error:
            progress.close()
            logger.error("stopping: %s", error)
            return 2
        step = trainer.step
        progress.update(1)
        if step % args.log_every == 0 or step == args.steps:
            lr = trainer.learning_rate()
            progress.set_postfix(loss=f"{losses['loss']:.3f}", lr=f"{lr:.2e}")
            write_scalars(writer, {**losses, "learning_rate": lr}, step, "train")
        if step % args.checkpoint_every == 0 or step == args.steps:
            manager.save(checkpoint_number=step)
        if val_records and (step % args.val_every == 0 or step == args.steps):
            summary = validate(trainer, val_records, config.class_names)
            m_ap = summary["mAP"] or 0.0
            logger.info("step %d: VOC07 mAP %.4f on %d images", step, m_ap, len(val_records))
            write_scalars(writer, {"mAP": m_ap}, step, "val")
            metrics = json.dumps({"step": step, **summary}, indent=2)
            write_text(args.out / "val_metrics.json", metrics)
    progress.close()
    model_path = args.out / "model.keras"
    with atomic_path(model_path) as partial:  # a kill here leaves the previous model.keras
        trainer.model.save(partial)
    logger.info(
        "done: %d steps (%.0f s this run); model saved to %s",
        trainer.step,
        time.monotonic() - started,
        model_path,
    )
    return 0


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.quick:
        apply_quick(args)
    if not args.dataset:
        logger.error("--dataset is required (or use --quick)")
        return 2
    try:
        return train(args)
    finally:
        if args.quick:
            shutil.rmtree(args.quick_root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(build_parser().parse_args()))
