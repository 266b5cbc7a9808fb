"""Convert published SSD weights (Caffe `.caffemodel`, ssd_keras `.h5`) into a `.keras` model.

Examples:
    # The original Caffe SSD300 trained on VOC07+12
    python scripts/convert_weights.py --from caffe VGG_VOC0712_SSD_300x300_iter_120000.caffemodel \\
        --preset ssd300_voc --out models/ssd300_voc.keras
    # The ssd_keras port of the COCO model, keeping only two classes for fine-tuning
    python scripts/convert_weights.py --from ssd_keras VGG_coco_SSD_300x300_iter_400000.h5 \\
        --preset ssd300_coco --keep-classes car,person --out models/ssd300_car_person.keras
    # OpenCV's face detector: config, anchors and decoder read from its deploy.prototxt
    python scripts/convert_weights.py --from caffe res10_300x300_ssd_iter_140000.caffemodel \\
        --prototxt deploy.prototxt --out models/ssd300_res10_face.keras
    # The ImageNet VGG-16 fc-reduced base, for `scripts/train.py --weights`
    python scripts/convert_weights.py --from caffe VGG_ILSVRC_16_layers_fc_reduced.caffemodel \\
        --base-only --preset ssd300_voc --out models/vgg16_base_ssd300_voc.keras

Layers are matched by their Caffe names and every shape is checked; a missing or mis-shaped
layer stops the conversion with a message naming it. The saved model carries its SSDConfig;
a copy is written next to it as `<out>.json` for `scripts/train.py --config ... --weights ...`;
an existing `<out>.json` holding another config is never replaced (the conversion stops).
Both files are written atomically. User errors (missing, truncated or foreign files) print one
line naming the file and exit with status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ssd_core import DecoderConfig, SSDConfig, build_model
from ssd_core.atomic_write import atomic_path
from ssd_core.input_files import InputFileError, require_file
from ssd_core.model import MODES
from ssd_core.weights import (
    WeightFileError,
    load_caffe_weights,
    load_ssd_keras_weights,
    subsample_classes,
)

logger = logging.getLogger("convert_weights")

KEEP_ADVICE = "move it away or choose another --out"
LOADERS = {"caffe": load_caffe_weights, "ssd_keras": load_ssd_keras_weights}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--from",
        dest="source",
        nargs=2,
        required=True,
        metavar=("FORMAT", "FILE"),
        help=f"source format ({', '.join(LOADERS)}) and weight file",
    )
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--preset", help="SSDConfig preset of the source model, e.g. ssd300_voc")
    model.add_argument("--config", type=Path, help="SSDConfig JSON file of the source model")
    model.add_argument(
        "--prototxt",
        type=Path,
        help="the source model's Caffe deploy.prototxt: config and decoder read from it",
    )
    parser.add_argument(
        "--pixel-mean",
        help="with --prototxt: input mean R,G,B on 0..255 (default: the recognised family's)",
    )
    parser.add_argument(
        "--class-names",
        help="with --prototxt: comma-separated foreground class names (default: the family's)",
    )
    parser.add_argument("--out", type=Path, required=True, help="output .keras file")
    parser.add_argument(
        "--base-only",
        action="store_true",
        help="load only the backbone's base network (VGG-16: conv1_1 .. fc7); other layers "
        "stay initialised",
    )
    parser.add_argument(
        "--keep-classes",
        help="comma-separated class names to keep after conversion, in the new label order",
    )
    parser.add_argument("--mode", choices=MODES, default="training", help="saved model mode")
    return parser


def _comma_list(text: str | None) -> list[str] | None:
    return None if text is None else [item.strip() for item in text.split(",") if item.strip()]


def source_config(args: argparse.Namespace) -> SSDConfig:
    """The SSDConfig named by --preset, --config or --prototxt (with its flags)."""
    if (args.pixel_mean or args.class_names) and not args.prototxt:
        raise ValueError("--pixel-mean and --class-names go with --prototxt")
    if args.preset:
        return SSDConfig.preset(args.preset)
    if args.config:
        return SSDConfig.load(args.config)
    require_file(args.prototxt, "a Caffe deploy.prototxt")
    mean = _comma_list(args.pixel_mean)
    if mean is not None and len(mean) != 3:
        raise ValueError(f"--pixel-mean needs three values R,G,B, got {args.pixel_mean!r}")
    return SSDConfig.from_caffe_prototxt(
        args.prototxt,
        class_names=_comma_list(args.class_names),
        pixel_mean=None if mean is None else [float(v) for v in mean],
    )


def check_replaceable_config(path: Path, config: SSDConfig) -> None:
    """Raise `InputFileError` if `path` exists and is not this same config: it may be the
    user's file, or the config of another converted model that still needs it."""
    if not path.exists():
        return
    try:
        existing = SSDConfig.load(path)
    except InputFileError as error:
        problem = f"exists and is no SSDConfig ({error.problem}); not replaced: {KEEP_ADVICE}"
        raise InputFileError(path, problem) from error
    if existing != config:
        old, new = existing.to_dict(), config.to_dict()
        fields = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        raise InputFileError(
            path,
            f"exists and holds another config (differs in {', '.join(fields)}); not replaced: "
            + KEEP_ADVICE,
        )


def main(args: argparse.Namespace) -> int:
    logger.info("configuration: %s", vars(args))
    source_format, source_file = args.source
    if source_format not in LOADERS:
        logger.error("unknown source format %r; choose one of %s", source_format, list(LOADERS))
        return 2
    if args.out.suffix != ".keras":
        logger.error("--out must end in .keras, got %s", args.out)
        return 2
    try:
        config = source_config(args)
        require_file(source_file, f"a {source_format} weight file")
        logger.info("model config: %s", config.to_json(indent=None))
        # A prototxt's DetectionOutput settings become the saved model's decoder.
        decoder = DecoderConfig.from_dict(config.extra.get("decoder", {}))
        model = build_model(config, mode=args.mode, decoder_config=decoder)
        LOADERS[source_format](model, source_file, base_only=args.base_only)
        if args.keep_classes:
            keep = [name.strip() for name in args.keep_classes.split(",") if name.strip()]
            model = subsample_classes(model, keep)
        # train.py --weights needs a model of the same config: --config <out>.json builds it.
        config_path = args.out.with_suffix(".json")
        check_replaceable_config(config_path, model.ssd_config)
    except (InputFileError, WeightFileError, ValueError) as error:
        logger.error("%s", error)
        return 2
    with atomic_path(args.out) as partial:
        model.save(partial)
    model.ssd_config.save(config_path)
    logger.info(
        "wrote %s: %s, %d classes %s",
        args.out,
        model.ssd_config.name,
        model.ssd_config.num_classes,
        list(model.ssd_config.class_names),
    )
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    sys.exit(main(build_parser().parse_args()))
