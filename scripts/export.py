"""Export a `.keras` SSD for serving: TF SavedModel, Triton model repository, ONNX, or LiteRT
(TFLite, mobile and edge); or quantise its network to int8 for the CPU engines.

Examples:
    python scripts/export.py --model models/ssd300_voc.keras --format savedmodel \\
        --out exports/ssd300_voc/1
    python scripts/export.py --model models/ssd300_voc.keras --format triton \\
        --out triton_models --max-batch-size 16
    python scripts/export.py --model models/ssd300_voc.keras --format onnx \\
        --out exports/ssd300_voc.onnx
    python scripts/export.py --model models/ssd300_voc.keras --format litert \\
        --out exports/ssd300_voc.tflite       # + exports/ssd300_voc.json (the SSDConfig)
    python scripts/export.py --model models/shapes.keras --quantize int8 \\
        --calibration voc:data/shapes192 --calibration-split train \\
        --guard voc:data/heldout --guard-split test

--quantize int8 runs post-training static quantisation with calibration images (the engine's
own tooling: NNCF for OpenVINO, onnxruntime.quantization for ONNX Runtime; `--engine`, default
both that are installed). The int8 network is written to the model's engine cache beside the
model file (`DIR/.ssd_engines/<stem>-<sha256>/<engine>-int8/`), where
`create_engine(model, ENGINE, "int8", model_path=MODEL)` finds it. `--guard DATASET_SPEC` then
compares int8 with fp32 on those images: VOC07 mAP within `--max-map-drop` (0.01) on an
annotated dataset, else the same detections (IoU >= 0.9, score within 0.05 above
`--guard-score-threshold`); a failed guard exits with status 3 (the network stays in the cache,
for inspection; delete it or do not select int8).

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
from ssd_core.engines.base import EngineUnavailableError
from ssd_core.engines.quantize import QUANTIZED_ENGINES
from ssd_core.engines.registry import missing_packages
from ssd_core.export import (
    export_litert,
    export_onnx,
    export_savedmodel,
    write_triton_repository,
)
from ssd_core.inference import load_inference_model
from ssd_core.input_files import InputFileError
from ssd_core.model import SSD

logger = logging.getLogger("export")

FORMATS = ("savedmodel", "triton", "onnx", "litert")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True, help="the .keras model to export")
    parser.add_argument("--format", choices=FORMATS, help="required unless --quantize")
    parser.add_argument(
        "--out",
        type=Path,
        help="savedmodel: the SavedModel directory; triton: the model repository; "
        "onnx: the .onnx file; litert: the .tflite file",
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
    add_quantize_arguments(parser)
    return parser


def add_quantize_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("int8 quantisation (instead of --format)")
    group.add_argument("--quantize", choices=("int8",), help="quantise the network")
    group.add_argument("--calibration", help="DATASET_SPEC of calibration images (images:DIR ok)")
    group.add_argument("--calibration-split", default="train")
    group.add_argument(
        "--calibration-images", type=int, default=300, help="at most this many, evenly spread"
    )
    group.add_argument("--engine", choices=("all", *QUANTIZED_ENGINES), default="all")
    group.add_argument("--guard", help="DATASET_SPEC to compare int8 with fp32 on")
    group.add_argument("--guard-split", default="test")
    group.add_argument("--max-map-drop", type=float, default=0.01)
    group.add_argument("--guard-score-threshold", type=float, default=0.3)


def decoder_overrides(args: argparse.Namespace) -> dict[str, object]:
    """The `DecoderConfig` fields given on the command line (unset ones are the model's)."""
    names = [field.name for field in dataclasses.fields(DecoderConfig)]
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def main(args: argparse.Namespace) -> int:
    logger.info("configuration: %s", vars(args))
    if args.quantize is None and (args.format is None or args.out is None):
        logger.error("give --format and --out (or --quantize int8 --calibration DATASET_SPEC)")
        return 2
    if args.quantize is not None and not args.calibration:
        logger.error("--quantize needs --calibration DATASET_SPEC (the calibration images)")
        return 2
    try:
        model = load_inference_model(args.model, decoder_overrides(args))
    except (InputFileError, ValueError) as error:
        logger.error("%s", error)
        return 2
    logger.info("decoder: %s", model.decoder_config)
    if args.quantize is not None:
        return quantize_main(model, args)
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
        elif args.format == "litert":
            out = export_litert(model, args.out)
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


def quantize_main(model: SSD, args: argparse.Namespace) -> int:
    """--quantize: int8 networks in the model's engine cache, then the optional guard."""
    from ssd_core.engines.quantize_guard import QuantizationGuardError, quantize_and_guard

    engines = list(QUANTIZED_ENGINES) if args.engine == "all" else [args.engine]
    if args.engine == "all":
        engines = [e for e in engines if not missing_packages(e)]
        if not engines:
            logger.error("no int8 engine installed: pip install -e '.[openvino]' or '.[onnx]'")
            return 2
    try:
        reports = quantize_and_guard(
            model,
            args.model,
            engines,
            calibration=(args.calibration, args.calibration_split, args.calibration_images),
            guard=(args.guard, args.guard_split) if args.guard else None,
            max_map_drop=args.max_map_drop,
            score_threshold=args.guard_score_threshold,
        )
    except (EngineUnavailableError, ValueError, OSError) as error:
        logger.error("%s", error)
        return 2
    except QuantizationGuardError as failure:
        for line in failure.reports:
            logger.error("%s", line)
        return 3
    for line in reports:
        logger.info("%s", line)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    sys.exit(main(build_parser().parse_args()))
