"""Datasets: annotation parsers into one record type, and the synthetic shapes scenes.

- `ImageRecord` / `DetectionDataset` (`records.py`): pixel [xmin, ymin, xmax, ymax] boxes,
  1-based labels (label i+1 is `class_names[i]`, 0 is background and never stored).
- `load_dataset(spec, split)` (`sources.py`): `voc:DIR`, `coco:FILE.json[:IMAGES_DIR]`,
  `csv:FILE.csv[:IMAGES_DIR]`, several joined by commas.
- Parsers: `voc.py`, `coco.py`, `csv_format.py`; synthetic scenes: `shapes.py`.
"""

from ssd_core.data.coco import parse_coco
from ssd_core.data.csv_format import parse_csv
from ssd_core.data.records import DatasetError, DetectionDataset, ImageRecord
from ssd_core.data.sources import load_dataset
from ssd_core.data.voc import parse_voc

__all__ = [
    "DatasetError",
    "DetectionDataset",
    "ImageRecord",
    "load_dataset",
    "parse_coco",
    "parse_csv",
    "parse_voc",
]
