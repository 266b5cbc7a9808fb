"""MS COCO instances JSON parser.

- Categories are mapped to contiguous labels 1..N in ascending category-id order (COCO's 80
  classes use ids 1..90 with gaps), keeping their names; with `class_names` given, categories
  are matched to it by name instead.
- `bbox` [x, y, w, h] (pixels, continuous) becomes [x, y, x + w, y + h].
- `iscrowd=1` regions are kept as `difficult` and `crowd` objects: evaluation ignores them, as
  COCOeval does, and training does not match them as positives (`ImageRecord.training_objects`).
- Images without annotations are kept; `image_id` is the COCO id as a string.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ssd_core.data.records import (
    DatasetError,
    DetectionDataset,
    check_on_invalid_box,
    checked_box,
    make_record,
    unknown_class_error,
)


def _load_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DatasetError(f"COCO annotation file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DatasetError(f"{path}: not valid JSON ({error})") from error
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"{path}: a COCO instances file needs a list '{key}'")
    return data


def _category_labels(
    categories: list[dict[str, Any]], class_names: Sequence[str] | None
) -> tuple[dict[int, int], tuple[str, ...], dict[int, str]]:
    """(category id -> label or 0 if not in class_names, class names, category id -> name)."""
    ordered = sorted(categories, key=lambda c: int(c["id"]))
    names_by_id = {int(c["id"]): str(c["name"]) for c in ordered}
    if class_names is None:
        class_names = tuple(names_by_id.values())
        return {cid: i + 1 for i, cid in enumerate(names_by_id)}, class_names, names_by_id
    index = {name: i + 1 for i, name in enumerate(class_names)}
    return {cid: index.get(n, 0) for cid, n in names_by_id.items()}, tuple(class_names), names_by_id


def parse_coco(
    annotation_file: str | Path,
    images_dir: str | Path | None = None,
    class_names: Sequence[str] | None = None,
    on_invalid_box: str = "skip",
) -> DetectionDataset:
    """Read a COCO instances JSON file.

    Args:
        annotation_file: e.g. `annotations/instances_val2017.json`.
        images_dir: directory of the image files (default: the JSON's directory).
        class_names: foreground names in label order; None takes the file's categories.
        on_invalid_box: "skip" logs and drops empty / out-of-image boxes, "fail" raises.

    Raises:
        DatasetError: missing or malformed file, an annotation of an unknown image or of a
            category outside `class_names` (named by annotation id), an invalid box with "fail".
    """
    check_on_invalid_box(on_invalid_box)
    path = Path(annotation_file)
    data = _load_json(path)
    images_dir = Path(images_dir) if images_dir is not None else path.parent
    label_of, class_names, names_by_id = _category_labels(data["categories"], class_names)
    images = {int(im["id"]): im for im in data["images"]}
    objects: dict[int, list] = {image_id: [] for image_id in images}
    for ann in data["annotations"]:
        _add_annotation(
            path, ann, images, label_of, names_by_id, class_names, on_invalid_box, objects
        )
    records = []
    for image_id, image in images.items():
        records.append(
            make_record(
                image_path=str(images_dir / image["file_name"]),
                image_id=str(image_id),
                objects=objects[image_id],
                width=image.get("width"),
                height=image.get("height"),
            )
        )
    return DetectionDataset(tuple(records), class_names)


def _add_annotation(
    path: Path,
    ann: dict[str, Any],
    images: dict[int, dict[str, Any]],
    label_of: dict[int, int],
    names_by_id: dict[int, str],
    class_names: Sequence[str],
    on_invalid_box: str,
    objects: dict[int, list],
) -> None:
    """Check one annotation and append it to `objects[image_id]` (or skip / raise)."""
    source = f"{path} annotation id {ann.get('id')}"
    image_id = int(ann["image_id"])
    if image_id not in images:
        raise DatasetError(f"{source}: refers to image id {image_id}, which is not in 'images'")
    category = int(ann["category_id"])
    if category not in names_by_id:
        raise DatasetError(f"{source}: category id {category} is not in 'categories'")
    index = len(objects[image_id])
    if label_of[category] == 0:
        raise unknown_class_error(source, index, names_by_id[category], class_names)
    x, y, w, h = (float(v) for v in ann["bbox"])
    image = images[image_id]
    width, height = image.get("width"), image.get("height")
    box = checked_box(source, index, [x, y, x + w, y + h], width, height, on_invalid_box)
    if box is None:
        return
    crowd = bool(ann.get("iscrowd", 0))
    objects[image_id].append((box, label_of[category], crowd, False, crowd))
