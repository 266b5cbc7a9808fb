"""CSV annotations: one row per box, columns named by a header row.

Column names are matched case-insensitively, with these accepted spellings:

- image file: `frame`, `filename`, `file_name`, `image`, `image_path`, `path`
- box: `xmin`, `ymin`, `xmax`, `ymax` (pixels, any column order)
- class: `class_id`, `label`, `class`, `class_name`, `category`
- optional: `difficult`, `truncated`, `width`, `height`

The Udacity driving layout (`frame,xmin,xmax,ymin,ymax,class_id`, the CrowdAI export
`xmin,ymin,xmax,ymax,Frame,Label,Preview URL`) works as it is. A class given as an integer is
the label itself (1..N); the names are then `class_names` or "1".."N". A class given as a name
is looked up in `class_names` (default: the sorted names found). A row whose box columns are
all empty marks an image with no objects. Rows of one image need not be adjacent; images keep
the order of their first row.
"""

from __future__ import annotations

import csv
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

ALIASES = {
    "image": ("frame", "filename", "file_name", "image", "image_path", "path"),
    "xmin": ("xmin",),
    "ymin": ("ymin",),
    "xmax": ("xmax",),
    "ymax": ("ymax",),
    "class": ("class_id", "label", "class", "class_name", "category"),
}
OPTIONAL = ("difficult", "truncated", "width", "height")


def _columns(path: Path, header: Sequence[str]) -> dict[str, str]:
    """Role -> header name, for the required and the present optional columns."""
    lower = {h.strip().lower(): h for h in header}
    found = {}
    for role, names in ALIASES.items():
        match = next((lower[n] for n in names if n in lower), None)
        if match is None:
            raise DatasetError(
                f"{path}: no column for {role!r}; expected one of {list(names)}, header is "
                f"{list(header)}"
            )
        found[role] = match
    found.update({role: lower[role] for role in OPTIONAL if role in lower})
    return found


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes")


def _int_or_none(value: str | None) -> int | None:
    value = (value or "").strip()
    return int(float(value)) if value else None


def _class_list(
    rows: list[dict[str, str]], cols: dict[str, str], class_names: Sequence[str] | None
) -> tuple[tuple[str, ...], dict[str, int]]:
    """(class names, class-column value -> label) from the class column."""
    values = [r[cols["class"]].strip() for r in rows if r[cols["class"]].strip()]
    numeric = bool(values) and all(v.lstrip("-").isdigit() for v in values)
    if numeric:
        top = max(int(v) for v in values)
        names = (
            tuple(class_names) if class_names is not None else tuple(map(str, range(1, top + 1)))
        )
        return names, {str(i): i for i in range(1, len(names) + 1)}
    names = tuple(class_names) if class_names is not None else tuple(sorted(set(values)))
    return names, {n: i + 1 for i, n in enumerate(names)}


def parse_csv(
    csv_file: str | Path,
    images_dir: str | Path | None = None,
    class_names: Sequence[str] | None = None,
    on_invalid_box: str = "skip",
) -> DetectionDataset:
    """Read a CSV with one row per box (see the module docstring for the columns).

    Args:
        csv_file: the CSV file.
        images_dir: directory the image column is relative to (default: the CSV's directory).
        class_names: foreground names in label order; see the module docstring for defaults.
        on_invalid_box: "skip" logs and drops empty / out-of-image boxes, "fail" raises.

    Raises:
        DatasetError: missing columns, a bad number, an unknown class, an invalid box with
            "fail"; messages name the file, the row (1-based, header is row 1) and the object.
    """
    check_on_invalid_box(on_invalid_box)
    path = Path(csv_file)
    if not path.is_file():
        raise DatasetError(f"CSV annotation file not found: {path}")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        cols = _columns(path, reader.fieldnames or [])
        rows = list(reader)
    images_dir = Path(images_dir) if images_dir is not None else path.parent
    names, label_of = _class_list(rows, cols, class_names)
    images: dict[str, dict] = {}
    for row_number, row in enumerate(rows, start=2):
        _add_row(path, row_number, row, cols, label_of, names, on_invalid_box, images)
    records = [
        make_record(
            image_path=str(images_dir / name),
            image_id=name,
            objects=info["objects"],
            width=info["width"],
            height=info["height"],
        )
        for name, info in images.items()
    ]
    return DetectionDataset(tuple(records), names)


def _add_row(
    path: Path,
    row_number: int,
    row: dict[str, str],
    cols: dict[str, str],
    label_of: dict[str, int],
    names: Sequence[str],
    on_invalid_box: str,
    images: dict[str, dict[str, Any]],
) -> None:
    """Check one row and add its object (if any) to its image in `images` (or skip / raise)."""
    image = row[cols["image"]].strip()
    if not image:
        raise DatasetError(f"{path} row {row_number}: empty image column {cols['image']!r}")
    width = _int_or_none(row.get(cols.get("width", ""), ""))
    height = _int_or_none(row.get(cols.get("height", ""), ""))
    info = images.setdefault(image, {"objects": [], "count": 0, "width": width, "height": height})
    raw_box = [row[cols[k]].strip() for k in ("xmin", "ymin", "xmax", "ymax")]
    if not any(raw_box) and not row[cols["class"]].strip():
        return  # an image with no objects
    index = info["count"]
    info["count"] += 1
    source = f"{path} row {row_number} ({image})"
    value = row[cols["class"]].strip()
    if value not in label_of:
        raise unknown_class_error(source, index, value, names)
    try:
        coordinates = [float(v) for v in raw_box]
    except ValueError as error:
        raise DatasetError(f"{source}: object {index}: bad box coordinate ({error})") from error
    box = checked_box(source, index, coordinates, width, height, on_invalid_box)
    if box is None:
        return
    flags = (_flag(row.get(cols.get("difficult", ""))), _flag(row.get(cols.get("truncated", ""))))
    info["objects"].append((box, label_of[value], *flags))
