"""Run a saved SSD on image files or folders, offline: annotated images plus JSON and CSV.

Examples:
    python scripts/predict.py ssd_core/assets/ssd7_shapes.keras photos/ --out predictions
    python scripts/predict.py models/ssd300_voc.keras a.jpg b.png --out out \\
        --score-threshold 0.5 --format png

The images go through the service's own inference path, `ssd_core.inference`:
`Predictor.prepare_file` (EXIF orientation, any mode to 8-bit RGB, a large JPEG decoded at a
reduced DCT scale, the model's resize policy), the model's decoder and the mapping back to
original pixels (`Predictor.predict_prepared`); they are drawn (on `read_image`'s full
decode) and encoded by
`ssd_core.visualize` as the service's `render=true` answers are. Writes to --out one annotated
image per input (`<name>.jpg` or `.png`), `detections.json` (per image: file, size, the API's
detection objects, or the error) and `detections.csv` (one row per detection). A folder
contributes its image files (.jpg, .jpeg, .png, .bmp, .webp), not its sub-folders. Exit code 0
when every image was read, 1 when some could not be (they are listed), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger("predict")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
JPEG_SUFFIXES = (".jpg", ".jpeg")
CSV_FIELDS = ("image", "label", "class_id", "score", "xmin", "ymin", "xmax", "ymax")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="saved .keras SSD (training-mode files are converted)")
    parser.add_argument("images", nargs="+", help="image files and/or folders of images")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--score-threshold", type=float, default=0.3,
        help="keep scores above this (not below the model decoder's threshold)",
    )  # fmt: skip
    parser.add_argument(
        "--max-detections", type=int, default=100,
        help="at most this many per image (not above the model decoder's max_detections)",
    )  # fmt: skip
    parser.add_argument(
        "--format", choices=("same", "jpeg", "png"), default="same",
        help="annotated image format; same: JPEG for JPEG inputs, PNG otherwise",
    )  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=8, help="images per forward pass")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def find_images(sources: Sequence[str]) -> list[Path]:
    """Files as given, folders expanded to their image files (sorted); order kept, no repeats.

    Raises:
        FileNotFoundError: a source that does not exist.
    """
    found: dict[Path, None] = {}
    for source in map(Path, sources):
        if source.is_dir():
            for path in sorted(source.iterdir()):
                if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                    found[path] = None
        elif source.is_file():
            found[source] = None
        else:
            raise FileNotFoundError(f"{source} is neither a file nor a folder")
    return list(found)


def batches(paths: Sequence[Path], size: int) -> Iterator[list[Path]]:
    for start in range(0, len(paths), size):
        yield list(paths[start : start + size])


def media_type_for(path: Path, forced: str | None) -> str:
    """The annotated image's type: `forced`, else JPEG for a JPEG input and PNG otherwise."""
    from ssd_core.visualize import JPEG, PNG

    return forced or (JPEG if path.suffix.lower() in JPEG_SUFFIXES else PNG)


def output_name(path: Path, media_type: str, taken: set[str]) -> str:
    """`<stem>.jpg|.png`, with `_2`, `_3`, ... when two inputs share a stem."""
    suffix = ".jpg" if media_type == "image/jpeg" else ".png"
    name, count = f"{path.stem}{suffix}", 1
    while name in taken:
        count += 1
        name = f"{path.stem}_{count}{suffix}"
    taken.add(name)
    return name


def main(args: argparse.Namespace) -> int:
    from ssd_core.inference import ImageDecodeError, Predictor, load_inference_model, read_image
    from ssd_core.input_files import InputFileError
    from ssd_core.visualize import JPEG, PNG, draw_detections, encode_image

    logger.info("configuration: %s", vars(args))
    if args.batch_size < 1:
        logger.error("--batch-size must be >= 1, got %d", args.batch_size)
        return 2
    try:
        paths = find_images(args.images)
        predictor = Predictor.from_model(load_inference_model(args.model))
        limits = check_limits(args, predictor)
    except (FileNotFoundError, InputFileError, ValueError) as error:
        logger.error("%s", error)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    forced = {"jpeg": JPEG, "png": PNG}.get(args.format)
    results: list[dict[str, Any]] = []
    taken: set[str] = set()
    progress = _progress(len(paths), not args.no_progress)
    for group in batches(paths, args.batch_size):
        decoded: list[tuple[Path, np.ndarray, Any]] = []
        for path in group:
            try:
                # The served image path for the model; the full image to draw on.
                decoded.append((path, read_image(path), predictor.prepare_file(path)))
            except (OSError, ImageDecodeError) as error:
                logger.warning("skipping %s: %s", path, error)
                results.append({"image": str(path), "error": str(error)})
        found = predictor.predict_prepared([prepared for _, _, prepared in decoded])
        for (path, rgb, _), detections in zip(decoded, found, strict=True):
            detections = detections.filter(**limits)
            media_type = media_type_for(path, forced)
            name = output_name(path, media_type, taken)
            (out / name).write_bytes(encode_image(draw_detections(rgb, detections), media_type))
            height, width = rgb.shape[:2]
            results.append(_image_result(path, name, width, height, detections))
        progress.update(len(group))
    progress.close()
    write_outputs(out, results, predictor.config.name, args.model)
    failed = [r["image"] for r in results if "error" in r]
    logger.info("wrote %d annotated images to %s", len(results) - len(failed), out)
    if failed:
        logger.error("could not read %d image(s): %s", len(failed), ", ".join(failed))
    return 1 if failed else 0


def check_limits(args: argparse.Namespace, predictor: Any) -> dict[str, Any]:
    """--score-threshold and --max-detections as `Detections.filter` arguments.

    Raises:
        ValueError: out of range, or beyond what the model's decoder returns (below its
            threshold, above its detection count).
    """
    predictor.decoder_config.check_honours(args.score_threshold, args.max_detections)
    return {"score_threshold": args.score_threshold, "max_detections": args.max_detections}


def _image_result(path: Path, name: str, width: int, height: int, detections: Any) -> dict:
    """One image's JSON entry; `detections` as `POST /detect` answers them."""
    return {
        "image": str(path), "annotated": name, "width": width, "height": height,
        "detections": [
            {"label": label_name, "class_id": label, "score": score,
             "box": dict(zip(("xmin", "ymin", "xmax", "ymax"), box, strict=True))}
            for box, score, label, label_name in detections.rows()
        ],
    }  # fmt: skip


def write_outputs(out: Path, results: list[dict[str, Any]], name: str, model: str) -> None:
    """`detections.json` (model name and version, then one entry per image) and `.csv`."""
    from ssd_core.input_files import file_digest

    version = file_digest(model)[:12]  # the version the service reports for the file
    document = {"model_name": name, "model_version": version, "images": results}
    (out / "detections.json").write_text(json.dumps(document, indent=2))
    with (out / "detections.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for result in results:
            for det in result.get("detections", ()):
                writer.writerow(
                    {"image": result["image"], "label": det["label"], "class_id": det["class_id"],
                     "score": f"{det['score']:.6f}",
                     **{k: f"{v:.2f}" for k, v in det["box"].items()}}
                )  # fmt: skip


def _progress(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="image", disable=not enabled)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    sys.exit(main(build_parser().parse_args()))
