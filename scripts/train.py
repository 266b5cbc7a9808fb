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
Everything but argument parsing is `ssd_core.training.fit`.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from ssd_core.config import SSDConfig
from ssd_core.training import DataSpec, FitSettings, NonFiniteLossError, fit

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
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
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


def model_config(args: argparse.Namespace) -> SSDConfig:
    """--config, else --preset (at the --quick input size)."""
    config = SSDConfig.load(args.config) if args.config else SSDConfig.preset(args.preset)
    if getattr(args, "quick_image_size", None):
        config = config.replace(image_size=args.quick_image_size)
    return config


def fit_settings(args: argparse.Namespace) -> FitSettings:
    boundaries = tuple(round(int(s) * args.schedule_scale) for s in args.lr_steps.split(",") if s)
    return FitSettings(
        steps=args.steps, batch_size=args.batch_size, optimizer=args.optimizer,
        learning_rate=args.lr, lr_boundaries=boundaries, warmup_steps=args.warmup_steps,
        momentum=args.momentum, weight_decay=args.weight_decay, seed=args.seed,
        mixed_precision=args.mixed_precision, multi_worker=args.multi_worker,
        channel_swap_prob=args.channel_swap_prob, checkpoint_every=args.checkpoint_every,
        keep_checkpoints=args.keep_checkpoints, log_every=args.log_every,
        val_every=args.val_every, max_val_images=args.max_val_images,
    )  # fmt: skip


def train(args: argparse.Namespace) -> int:
    logger.info("configuration: %s", {k: str(v) for k, v in vars(args).items()})
    progress = ProgressBar(args)
    try:
        data = DataSpec(args.dataset, args.split, args.val_dataset, args.val_split)
        fit(model_config(args), data, args.out, fit_settings(args), weights=args.weights,
            overwrite=args.overwrite, on_step=progress.step)  # fmt: skip
    except NonFiniteLossError as error:
        logger.error("stopping: %s", error)
        return 2
    except USER_ERRORS as error:
        logger.error("%s", error)
        return 2
    finally:
        progress.close()
    return 0


class ProgressBar:
    """A tqdm bar over the run's steps, moved by `fit`'s step callback."""

    def __init__(self, args: argparse.Namespace) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=args.steps, desc="train", dynamic_ncols=True,
                        disable=args.no_progress)  # fmt: skip
        self.log_every = args.log_every

    def step(self, step: int, losses: dict[str, Any]) -> None:
        self.bar.n = step
        if step % self.log_every == 0:
            self.bar.set_postfix(loss=f"{losses['loss']:.3f}")
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


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
