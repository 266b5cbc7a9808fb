"""Export a `.keras` SSD for serving: TF SavedModel, Triton model repository, or ONNX.

Examples:
    python scripts/export.py --model models/ssd300_voc.keras --format savedmodel \\
        --out exports/ssd300_voc/1
    python scripts/export.py --model models/ssd300_voc.keras --format triton \\
        --out triton_models --max-batch-size 16
    python scripts/export.py --model models/ssd300_voc.keras --format onnx \\
        --out exports/ssd300_voc.onnx

The served signature takes `images` (B, H, W, 3) uint8 RGB already resized to the model input
size (the config's resize policy) and returns `boxes` (normalised xyxy), `scores`, `labels`,
`num_detections`; see `ssd_core.export`. Decoder settings can be overridden for the exported
graph. Outputs are written under a temporary name and renamed when complete; an existing
non-empty SavedModel directory is never replaced. User errors (a missing, truncated or non-SSD
model, an occupied --out, an invalid decoder override) print one line naming the file and exit
with status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from ssd_core import DecoderConfig
from ssd_core.export import export_onnx, export_savedmodel, write_triton_repository
from ssd_core.inference import load_inference_model
from ssd_core.input_files import InputFileError

logger = logging.getLogger("export")

FORMATS = ("savedmodel", "triton", "onnx")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True, help="the .keras model to export")
    parser.add_argument("--format", choices=FORMATS, required=True)
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        help="savedmodel: the SavedModel directory; triton: the model repository; "
        "onnx: the .onnx file",
    )
    parser.add_argument("--name", help="Triton model name (default: the config name)")
    parser.add_argument("--version", type=int, default=1, help="Triton model version")
    parser.add_argument("--max-batch-size", type=int, default=8, help="Triton max_batch_size")
    parser.add_argument(
        "--max-queue-delay-us", type=int, default=2000, help="Triton dynamic batching delay"
    )
    decoder = parser.add_argument_group("decoder overrides (default: the model's own)")
    decoder.add_argument(
        "--decoder", dest="method", help="caffe (per-class NMS) or fast (class-agnostic)"
    )
    decoder.add_argument("--score-threshold", type=float)
    decoder.add_argument("--iou-threshold", type=float)
    decoder.add_argument("--top-k", type=int)
    decoder.add_argument("--max-detections", type=int)
    decoder.add_argument(
        "--clip",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="clip decoded boxes to the image before NMS (--no-clip: Caffe's unclipped boxes)",
    )
    return parser


def decoder_overrides(args: argparse.Namespace) -> dict[str, object]:
    """The `DecoderConfig` fields given on the command line (unset ones are the model's)."""
    names = [field.name for field in dataclasses.fields(DecoderConfig)]
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def main(args: argparse.Namespace) -> int:
    logger.info("configuration: %s", vars(args))
    try:
        model = load_inference_model(args.model, decoder_overrides(args))
    except (InputFileError, ValueError) as error:
        logger.error("%s", error)
        return 2
    logger.info("decoder: %s", model.decoder_config)
    try:
        if args.format == "savedmodel":
            out = export_savedmodel(model, args.out)
        elif args.format == "triton":
            out = write_triton_repository(
                model,
                args.out,
                name=args.name,
                version=args.version,
                max_batch_size=args.max_batch_size,
                max_queue_delay_us=args.max_queue_delay_us,
            )
        else:
            out = export_onnx(model, args.out)
    except ImportError as error:
        logger.error("ONNX export needs the 'onnx' extra (pip install -e '.[onnx]'): %s", error)
        return 2
    except (FileExistsError, ValueError) as error:
        logger.error("%s", error)
        return 2
    logger.info("exported %s as %s to %s", args.model, args.format, out)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    sys.exit(main(build_parser().parse_args()))
