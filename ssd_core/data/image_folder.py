"""`images:DIR`: a folder of images without annotations (calibration images for int8
quantisation, images to predict on), as a `DetectionDataset` whose records have no boxes.

Images are the folder's files (not its subfolders) with a known image suffix, in name order;
the image id is the file name without its suffix. Write `{split}` in the path to have the
split filled in (`images:/data/calib/{split}`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ssd_core.data.records import DatasetError, DetectionDataset, ImageRecord

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def parse_image_folder(
    folder: str | Path, class_names: Sequence[str] | None = None
) -> DetectionDataset:
    """The images of `folder` as records with no objects.

    Args:
        folder: the directory holding the images.
        class_names: the class list the dataset claims (only its length matters to users of
            the labels; there are none); default: none.

    Raises:
        DatasetError: the folder is missing or holds no image.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"images:{folder}: no such folder")
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not files:
        raise DatasetError(f"images:{folder}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    empty = np.zeros((0, 4), np.float32)
    records = [
        ImageRecord(str(path), empty, np.zeros(0, np.int32), np.zeros(0, bool), path.stem)
        for path in files
    ]
    return DetectionDataset(tuple(records), tuple(class_names or ()))
