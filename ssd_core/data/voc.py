"""Pascal VOC layout parser: `Annotations/*.xml`, `ImageSets/Main/<split>.txt`, `JPEGImages/`.

The image file is the one the XML's `<filename>` names (falling back to `<id>.jpg`), its size
comes from `<size>` if present; `<difficult>` and `<truncated>` are optional (default 0).
Images without objects are kept. Box coordinates are kept as written (VOC's 1-based pixels).

Class list, in order of preference: the `class_names` argument; a `labels.txt` file in the
dataset root (one name per line, in label order; `scripts/make_shapes_dataset.py` writes one);
otherwise the sorted names found in the split (for Pascal VOC that is the usual 20-class order).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from ssd_core.data.records import (
    DatasetError,
    DetectionDataset,
    ImageRecord,
    check_on_invalid_box,
    checked_box,
    make_record,
    unknown_class_error,
)

LABELS_FILE = "labels.txt"


def read_split_ids(root: str | Path, split: str) -> list[str]:
    """Image ids listed in `ImageSets/Main/<split>.txt` (first token of each non-empty line)."""
    path = Path(root) / "ImageSets" / "Main" / f"{split}.txt"
    if not path.is_file():
        raise DatasetError(f"VOC split file not found: {path} (is {root} a VOC-layout directory?)")
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def read_labels_file(root: str | Path) -> tuple[str, ...] | None:
    """Class names from `<root>/labels.txt`, or None if the file does not exist."""
    path = Path(root) / LABELS_FILE
    if not path.is_file():
        return None
    names = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    if "background" in names:
        raise DatasetError(f"{path}: list foreground classes only, without 'background'")
    return names


def _text(element: ET.Element, tag: str, default: str | None = None) -> str | None:
    child = element.find(tag)
    if child is None or child.text is None:
        return default
    return child.text.strip()


def _flag(element: ET.Element, tag: str) -> bool:
    value = _text(element, tag, "0")
    return value not in ("0", "", "false", "False")


def _parse_xml(xml_path: Path) -> tuple[ET.Element, list[ET.Element]]:
    if not xml_path.is_file():
        raise DatasetError(f"VOC annotation not found: {xml_path}")
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as error:
        raise DatasetError(f"{xml_path}: not valid XML ({error})") from error
    return root, root.findall("object")


def _object_box(xml_path: Path, index: int, obj: ET.Element) -> list[float]:
    bndbox = obj.find("bndbox")
    if bndbox is None:
        raise DatasetError(f"{xml_path}: object {index} has no <bndbox>")
    try:
        return [float(_text(bndbox, tag) or "nan") for tag in ("xmin", "ymin", "xmax", "ymax")]
    except ValueError as error:
        raise DatasetError(f"{xml_path}: object {index}: bad box coordinate ({error})") from error


def _image_size(root: ET.Element) -> tuple[int | None, int | None]:
    size = root.find("size")
    if size is None:
        return None, None
    # Some VOC2012 files carry size 0; treat it as unknown rather than as a 0-pixel image.
    return _positive_int(_text(size, "width")), _positive_int(_text(size, "height"))


def _positive_int(value: str | None) -> int | None:
    return int(float(value)) or None if value else None


def _parse_record(
    dataset_root: Path,
    image_id: str,
    label_of: dict[str, int],
    class_names: Sequence[str],
    on_invalid_box: str,
) -> ImageRecord:
    xml_path = dataset_root / "Annotations" / f"{image_id}.xml"
    root, objects = _parse_xml(xml_path)
    width, height = _image_size(root)
    filename = _text(root, "filename") or f"{image_id}.jpg"
    kept = []
    for index, obj in enumerate(objects):
        name = _text(obj, "name") or ""
        if name not in label_of:
            raise unknown_class_error(str(xml_path), index, name, class_names)
        coordinates = _object_box(xml_path, index, obj)
        box = checked_box(str(xml_path), index, coordinates, width, height, on_invalid_box)
        if box is None:
            continue
        kept.append((box, label_of[name], _flag(obj, "difficult"), _flag(obj, "truncated")))
    return make_record(
        image_path=str(dataset_root / "JPEGImages" / filename),
        image_id=image_id,
        objects=kept,
        width=width,
        height=height,
    )


def _names_in_split(root: Path, ids: Sequence[str]) -> tuple[str, ...]:
    names: set[str] = set()
    for image_id in ids:
        _, objects = _parse_xml(root / "Annotations" / f"{image_id}.xml")
        names.update(_text(obj, "name") or "" for obj in objects)
    return tuple(sorted(names))


def write_voc_annotation(
    path: str | Path,
    filename: str,
    width: int,
    height: int,
    objects: Sequence[tuple[str, Sequence[float], bool, bool]],
) -> None:
    """Write one VOC XML annotation.

    Args:
        path: the `.xml` file to write.
        filename: image file name inside `JPEGImages/`.
        width, height: image size in pixels.
        objects: (class name, VOC pixel box [xmin, ymin, xmax, ymax], difficult, truncated).
    """
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "JPEGImages"
    ET.SubElement(root, "filename").text = filename
    size = ET.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(int(value))
    ET.SubElement(root, "segmented").text = "0"
    for name, box, difficult, truncated in objects:
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = name
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = str(int(truncated))
        ET.SubElement(obj, "difficult").text = str(int(difficult))
        bndbox = ET.SubElement(obj, "bndbox")
        for tag, coordinate in zip(("xmin", "ymin", "xmax", "ymax"), box, strict=True):
            ET.SubElement(bndbox, tag).text = f"{float(coordinate):g}"
    ET.indent(root)
    ET.ElementTree(root).write(path, encoding="unicode")


def parse_voc(
    root: str | Path,
    split: str,
    class_names: Sequence[str] | None = None,
    on_invalid_box: str = "skip",
) -> DetectionDataset:
    """Read one split of a Pascal VOC layout directory.

    Args:
        root: directory holding `Annotations/`, `ImageSets/Main/` and `JPEGImages/`
            (e.g. `VOCdevkit/VOC2007`).
        split: name of the list in `ImageSets/Main` (`train`, `val`, `trainval`, `test`).
        class_names: foreground class names in label order; see the module docstring for the
            default.
        on_invalid_box: "skip" logs and drops empty / out-of-image boxes, "fail" raises.

    Returns:
        A `DetectionDataset` in the order of the split file.

    Raises:
        DatasetError: missing files, malformed XML, an object of a class not in the list, or
            (with on_invalid_box="fail") an invalid box; the message names the file and object.
    """
    check_on_invalid_box(on_invalid_box)
    root = Path(root)
    ids = read_split_ids(root, split)
    if class_names is None:
        class_names = read_labels_file(root) or _names_in_split(root, ids)
    class_names = tuple(class_names)
    label_of = {name: i + 1 for i, name in enumerate(class_names)}
    records = tuple(_parse_record(root, i, label_of, class_names, on_invalid_box) for i in ids)
    return DetectionDataset(records, class_names)
