"""Evaluate a saved SSD (or a detections file) on a dataset: Pascal VOC or COCO mAP.

Examples:
    python scripts/evaluate.py --model runs/ssd7/model.keras --dataset voc:data/shapes \\
        --split test --metric voc07 --out runs/ssd7/eval
    python scripts/evaluate.py --model ssd300.keras \\
        --dataset voc:VOCdevkit/VOC2007 --split test --metric voc2010 --out eval07
    python scripts/evaluate.py --detections dets.json --dataset voc:data/shapes --split test \\
        --metric coco --out eval_external
    python scripts/evaluate.py --quick --out eval_quick   # seconds: shipped shapes model,
                                                          # 12 generated scenes
    python scripts/evaluate.py --model models/shapes.keras --dataset voc:data/heldout \\
        --split test --engine openvino --precision int8 --out eval_int8

Images go through the service's own inference path (`ssd_core.inference`: decoding, the
model's resize policy, boxes back to pixels), so the mAP is that of what the service serves.
--engine (tf, tf-xla, onnxruntime, openvino; `ssd_core.engines`; default: the Keras model
under tf.function) runs the batches at --precision (int8: the network `scripts/export.py
--quantize int8` wrote beside the model).

Writes to --out: `results.json` (mAP, per-class AP, settings), `pr_<class>.png` and
`pr_summary.png`, the VOC server files `comp4_det_test_<class>.txt`, `detections.json`, the
gallery `gallery/*.jpg` (the --gallery images with the most false positives + misses, ground
truth and detections drawn) and `index.html` (AP table, PR curves, gallery).
Dataset specs are those of `ssd_core.data.load_dataset` (voc:DIR, coco:FILE.json[:IMAGES],
csv:FILE.csv[:IMAGES], joined by commas).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from ssd_core.data import load_dataset
from ssd_core.evaluation import evaluate_coco, evaluate_voc
from ssd_core.evaluation.gallery import worst_images, write_gallery
from ssd_core.evaluation.html_report import write_index_html
from ssd_core.evaluation.reports import ap_table, plot_pr_curves, write_voc_result_files

logger = logging.getLogger("evaluate")

METRICS = ("voc07", "voc2010", "coco")
QUICK_MODEL = Path(__file__).resolve().parents[1] / "ssd_core" / "assets" / "ssd7_shapes.keras"
QUICK_IMAGES, QUICK_SEED, QUICK_SIZE = 12, 5, (192, 320)  # the shipped model's training size


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="saved .keras SSD model")
    source.add_argument("--detections", help="JSON list of {image_id, label, score, box} (pixels)")
    source.add_argument(
        "--quick", action="store_true",
        help="the shipped shapes model on QUICK_IMAGES scenes generated into OUT/quick_data",
    )  # fmt: skip
    parser.add_argument("--dataset", help="dataset spec, e.g. voc:data/shapes (not with --quick)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--metric", choices=METRICS, default="voc07")
    parser.add_argument("--iou-threshold", type=float, default=0.5, help="VOC metrics only")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--engine", help="run the model in this engine (see above)")
    parser.add_argument("--precision", default="auto", help="engine precision: fp32, int8, ...")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument(
        "--gallery", type=int, default=12, help="images in the error gallery (0: none)"
    )
    parser.add_argument(
        "--gallery-score-threshold", type=float, default=0.3,
        help="detections drawn and counted in the gallery: score above this (the service default)",
    )  # fmt: skip
    return parser


def get_detections(args: argparse.Namespace) -> tuple[Any, list[dict[str, Any]]]:
    """(dataset, detections) from the model's predictions or from --detections."""
    if args.detections:
        dataset = load_dataset(args.dataset, args.split)
        detections = json.loads(Path(args.detections).read_text())
        if not isinstance(detections, list):
            raise ValueError(f"{args.detections} must hold a JSON list of detections")
        return dataset, detections
    from ssd_core.evaluation.predict import predict_dataset
    from ssd_core.inference import Predictor, load_inference_model

    model = load_inference_model(args.model)
    predictor = Predictor.from_model(model)
    if args.engine:
        from ssd_core.engines import create_engine

        engine = create_engine(model, args.engine, args.precision, model_path=args.model)
        predictor = Predictor(engine)
    logger.info(
        "engine: %s; decoder: %s; resize: %s",
        predictor.engine.describe(), predictor.decoder_config, predictor.config.resize,
    )  # fmt: skip
    dataset = load_dataset(args.dataset, args.split, predictor.config.class_names)
    detections = predict_dataset(predictor, dataset.records, args.batch_size, not args.no_progress)
    return dataset, detections


def apply_quick(args: argparse.Namespace) -> argparse.Namespace:
    """--quick: generate a small shapes test split in OUT/quick_data, evaluate the shipped
    shapes model on it (its file, not the service's embedded default, which may change)."""
    from ssd_core.data.shapes import write_shapes_dataset

    height, width = QUICK_SIZE
    root = write_shapes_dataset(Path(args.out) / "quick_data", num_train=0,
                                num_test=QUICK_IMAGES, seed=QUICK_SEED, height=height,
                                width=width)  # fmt: skip
    return argparse.Namespace(**{**vars(args), "model": str(QUICK_MODEL),
                                 "dataset": f"voc:{root}", "split": "test"})  # fmt: skip


def main(args: argparse.Namespace) -> int:
    if args.quick:
        args = apply_quick(args)
    elif not args.dataset:
        logger.error("--dataset is required (except with --quick)")
        return 2
    logger.info("configuration: %s", vars(args))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dataset, detections = get_detections(args)
    names = dataset.class_names
    labels = list(range(1, len(names) + 1))
    truth = dataset.ground_truth()
    voc_metric = "voc2010" if args.metric == "coco" else args.metric
    voc = evaluate_voc(detections, truth, args.iou_threshold, voc_metric, labels=labels)
    if args.metric == "coco":
        coco = evaluate_coco(detections, truth, labels=labels)
        results = {**coco.to_dict(names), "voc2010_iou50": voc.to_dict(names)}
        table = ap_table(coco.ap, names, coco.mAP)
    else:
        results = voc.to_dict(names)
        table = ap_table(voc.ap, names, voc.mAP)
    results.update(dataset=args.dataset, split=args.split, num_images=len(dataset),
                   num_detections=len(detections), model=args.model)  # fmt: skip
    if args.engine:
        results.update(engine=args.engine, precision=args.precision)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "detections.json").write_text(json.dumps(detections))
    write_voc_result_files(detections, names, out)
    curves = plot_pr_curves(voc, names, out)
    write_report(args, dataset, detections, results, voc.to_dict(names)["num_gt"], curves)
    print(table)
    logger.info("wrote results to %s", out)
    return 0


def write_report(
    args: argparse.Namespace,
    dataset: Any,
    detections: list[dict[str, Any]],
    results: dict[str, Any],
    num_gt: dict[str, int],
    curves: list[Path],
) -> None:
    """The gallery of the worst images and `index.html` in --out."""
    worst = worst_images(
        detections, dataset.ground_truth(), args.gallery, args.iou_threshold,
        args.gallery_score_threshold,
    )  # fmt: skip
    gallery = write_gallery(dataset.records, worst, dataset.class_names, args.out)
    keys = ("metric", "mAP", "dataset", "split", "model", "num_images", "num_detections")
    summary = {key: results.get(key) for key in keys}
    curve_files = [curves[-1].name] + [path.name for path in curves[:-1]]  # summary first
    write_index_html(
        args.out, summary, results["ap"], num_gt, curve_files, gallery,
        args.gallery_score_threshold,
    )  # fmt: skip


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    sys.exit(main(build_parser().parse_args()))
