"""Files shipped inside the package: two ready detectors and their configs.

- `ssd300_res10_face.keras` (embedded name `face`, the default model): OpenCV's Caffe face
  detector (`res10_300x300_ssd_iter_140000`), converted by `scripts/convert_weights.py` from its
  `.caffemodel` and `deploy.prototxt`; `NOTICE` names its origin, licence and the command.
  `ssd300_res10_face.json` is its `SSDConfig`.
- `ssd7_shapes.keras` (embedded name `shapes`): an SSD7 trained with `scripts/train.py` on the
  synthetic shapes dataset (`scripts/make_shapes_dataset.py`); the README gives the commands and
  its VOC07 mAP. `ssd7_shapes_config.json` is the `--config` it was trained with.
"""

from __future__ import annotations

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent
# Embedded model name -> file, the default first.
EMBEDDED_MODEL_FILES = {"face": "ssd300_res10_face.keras", "shapes": "ssd7_shapes.keras"}
DEFAULT_MODEL = "face"


def embedded_models() -> dict[str, Path]:
    """Embedded model name (`"face"`, `"shapes"`) -> path of its `.keras` file, the default
    first. Every file ships with the package; a caller loading one that is missing (a broken
    installation) gets an error naming its path."""
    return {name: ASSETS_DIR / file for name, file in EMBEDDED_MODEL_FILES.items()}


def default_model_path() -> Path:
    """Path of the embedded default model (`face`)."""
    return embedded_models()[DEFAULT_MODEL]
