"""Run a saved SSD on image files or folders, offline: annotated images plus JSON and CSV.

Examples:
    python scripts/predict.py ssd_core/assets/ssd7_shapes.keras photos/ --out predictions
    python scripts/predict.py models/ssd300_voc.keras a.jpg b.png --out out \\
        --score-threshold 0.5 --format png

The images go through the service's own path: `service.images.decode_image` (EXIF
orientation, any mode to 8-bit RGB), `resize_to_input` (the one resize policy),
`Detector.predict_batch` and `to_pixel_detections` (boxes in original pixels), and are drawn by
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
# An offline tool reads trusted files: limits far above the service's, still refusing bombs.
MAX_IMAGE_BYTES = 512 * 1024 * 1024
MAX_IMAGE_PIXELS = 400_000_000
CSV_FIELDS = ("image", "label", "class_id", "score", "xmin", "ymin", "xmax", "ymax")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="saved .keras SSD (training-mode files are converted)")
    parser.add_argument("images", nargs="+", help="image files and/or folders of images")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--score-threshold", type=float, default=0.3)
    parser.add_argument("--max-detections", type=int, default=100)
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
    from service.detector import load_detector, to_pixel_detections
    from service.errors import ServiceError
    from service.images import decode_image, resize_to_input
    from service.render import JPEG, PNG, annotate, encode_image, response_type

    logger.info("configuration: %s", vars(args))
    if not 0.0 <= args.score_threshold <= 1.0 or args.max_detections < 1 or args.batch_size < 1:
        logger.error("need 0 <= --score-threshold <= 1, --max-detections >= 1, --batch-size >= 1")
        return 2
    try:
        paths = find_images(args.images)
    except FileNotFoundError as error:
        logger.error("%s", error)
        return 2
    detector = load_detector(Path(args.model))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    forced = {"jpeg": JPEG, "png": PNG}.get(args.format)
    results: list[dict[str, Any]] = []
    taken: set[str] = set()
    progress = _progress(len(paths), not args.no_progress)
    for group in batches(paths, args.batch_size):
        decoded: list[tuple[Path, bytes, np.ndarray]] = []
        for path in group:
            try:
                data = path.read_bytes()
                rgb = decode_image(data, max_bytes=MAX_IMAGE_BYTES, max_pixels=MAX_IMAGE_PIXELS)
            except (OSError, ServiceError) as error:
                logger.warning("skipping %s: %s", path, error)
                results.append({"image": str(path), "error": str(error)})
                continue
            decoded.append((path, data, rgb))
        if decoded:
            pixels = np.stack([resize_to_input(rgb, detector.input_size) for _, _, rgb in decoded])
            for (path, data, rgb), raw in zip(decoded, detector.predict_batch(pixels), strict=True):
                height, width = rgb.shape[:2]
                detections = to_pixel_detections(
                    raw, width=width, height=height, label_names=detector.config.label_names,
                    score_threshold=args.score_threshold, max_detections=args.max_detections,
                )  # fmt: skip
                media_type = forced or response_type(True, None, data) or PNG
                name = output_name(path, media_type, taken)
                (out / name).write_bytes(encode_image(annotate(rgb, detections), media_type))
                results.append(_image_result(path, name, width, height, detections))
        progress.update(len(group))
    progress.close()
    write_outputs(out, results, detector)
    failed = [r["image"] for r in results if "error" in r]
    logger.info("wrote %d annotated images to %s", len(results) - len(failed), out)
    if failed:
        logger.error("could not read %d image(s): %s", len(failed), ", ".join(failed))
    return 1 if failed else 0


def _image_result(path: Path, name: str, width: int, height: int, detections: Any) -> dict:
    """One image's JSON entry; `detections` as `POST /detect` answers them."""
    return {
        "image": str(path), "annotated": name, "width": width, "height": height,
        "detections": [
            {"label": d.label, "class_id": d.class_id, "score": d.score,
             "box": dict(zip(("xmin", "ymin", "xmax", "ymax"), d.box, strict=True))}
            for d in detections
        ],
    }  # fmt: skip


def write_outputs(out: Path, results: list[dict[str, Any]], detector: Any) -> None:
    """`detections.json` (model name and version, then one entry per image) and `.csv`."""
    document = {"model_name": detector.name, "model_version": detector.version, "images": results}
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
