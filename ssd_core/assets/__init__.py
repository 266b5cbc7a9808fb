"""Files shipped inside the package: the default SSD7 shapes detector and its training config.

`ssd7_shapes.keras` is an SSD7 trained with `scripts/train.py` on the synthetic shapes dataset
(`scripts/make_shapes_dataset.py`); the README gives the commands and its VOC07 mAP.
`ssd7_shapes_config.json` is the `--config` it was trained with.
"""

from __future__ import annotations

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent
DEFAULT_MODEL_FILE = "ssd7_shapes.keras"


def default_model_path() -> Path:
    """Path of the embedded default model (may not exist in a source tree without the asset)."""
    return ASSETS_DIR / DEFAULT_MODEL_FILE
