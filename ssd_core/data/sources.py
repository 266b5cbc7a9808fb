"""`load_dataset(spec, split)`: one entry point over every annotation format.

Spec syntax (several specs may be joined by commas, e.g. VOC2007 + VOC2012):

- `voc:DIR` - a Pascal VOC layout directory (`VOCdevkit/VOC2007`); `split` picks
  `ImageSets/Main/<split>.txt`.
- `coco:ANNOTATIONS.json[:IMAGES_DIR]` - a COCO instances file; images are looked up in
  IMAGES_DIR (default: the JSON's directory).
- `csv:FILE.csv[:IMAGES_DIR]` - one row per box with a header (see `ssd_core.data.csv_format`);
  images in IMAGES_DIR (default: the CSV's directory).

- `images:DIR` - a folder of images with no annotations (`ssd_core.data.image_folder`), e.g.
  calibration images for int8 quantisation.

For COCO and CSV the file itself is the split; write `{split}` in a path to have it filled in
(`coco:/data/coco/annotations/instances_{split}.json:/data/coco/{split}`); for `images:` too.

When several specs are joined without an explicit `class_names`, the class list is the first
dataset's list followed by any new names of the later ones in their order, and labels are
remapped by class name, so VOC2007 + VOC2012 keep one consistent 20-class list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from ssd_core.data.records import DetectionDataset, ImageRecord, check_on_invalid_box

FORMATS = ("voc", "coco", "csv", "images")


def split_spec(spec: str) -> tuple[str, str, str | None]:
    """Split one spec into (format, annotation path, images dir or None).

    Raises:
        ValueError: unknown format prefix or an empty path.
    """
    fmt, sep, rest = spec.strip().partition(":")
    if not sep or fmt not in FORMATS or not rest:
        raise ValueError(
            f"dataset spec must look like 'voc:DIR', 'coco:FILE.json[:IMAGES_DIR]', "
            f"'csv:FILE.csv[:IMAGES_DIR]' or 'images:DIR', got {spec!r}"
        )
    if fmt in ("voc", "images"):
        return fmt, rest, None
    suffix = f".{fmt}:" if fmt == "csv" else ".json:"
    cut = rest.find(suffix)
    if cut < 0:
        return fmt, rest, None
    end = cut + len(suffix) - 1
    return fmt, rest[:end], rest[end + 1 :] or None


def _load_one(
    spec: str, split: str, class_names: Sequence[str] | None, on_invalid_box: str
) -> DetectionDataset:
    fmt, path, images_dir = split_spec(spec)
    path = path.replace("{split}", split)
    if images_dir is not None:
        images_dir = images_dir.replace("{split}", split)
    if fmt == "voc":
        from ssd_core.data.voc import parse_voc

        return parse_voc(path, split, class_names, on_invalid_box)
    if fmt == "images":
        from ssd_core.data.image_folder import parse_image_folder

        return parse_image_folder(path, class_names)
    if fmt == "coco":
        from ssd_core.data.coco import parse_coco

        return parse_coco(path, images_dir, class_names, on_invalid_box)
    from ssd_core.data.csv_format import parse_csv

    return parse_csv(path, images_dir, class_names, on_invalid_box)


def _merged_class_names(datasets: Sequence[DetectionDataset]) -> tuple[str, ...]:
    names = list(datasets[0].class_names)
    for dataset in datasets[1:]:
        names.extend(n for n in dataset.class_names if n not in names)
    return tuple(names)


def load_dataset(
    spec: str,
    split: str,
    class_names: Sequence[str] | None = None,
    on_invalid_box: str = "skip",
) -> DetectionDataset:
    """Load and concatenate the datasets a spec names (see the module docstring for the syntax).

    Args:
        spec: one spec or several joined by commas.
        split: split name (`train`, `test`, `trainval`, ...), passed to VOC and substituted for
            `{split}` in COCO / CSV paths.
        class_names: foreground class names in label order; None takes them from the data.
        on_invalid_box: "skip" (log and drop) or "fail" (raise) on empty / out-of-image boxes.

    Returns:
        One `DetectionDataset`. Image ids of later specs that collide with earlier ones are
        prefixed with the spec index (`"1/000005"`) so ids stay unique.
    """
    check_on_invalid_box(on_invalid_box)
    specs = [s for s in spec.split(",") if s.strip()]
    if not specs:
        raise ValueError(f"dataset spec is empty: {spec!r}")
    datasets = [_load_one(s, split, class_names, on_invalid_box) for s in specs]
    names = tuple(class_names) if class_names is not None else _merged_class_names(datasets)
    records = []
    seen: set[str] = set()
    for index, dataset in enumerate(datasets):
        if dataset.class_names != names:
            dataset = dataset.with_class_names(names)
        for record in dataset.records:
            if record.image_id in seen:
                record = _with_image_id(record, f"{index}/{record.image_id}")
            seen.add(record.image_id)
            records.append(record)
    return DetectionDataset(tuple(records), names)


def _with_image_id(record: ImageRecord, image_id: str) -> ImageRecord:
    return replace(record, image_id=image_id)
