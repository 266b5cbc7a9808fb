"""ssd_core: SSD300 / SSD512 / SSD7 in TensorFlow 2 / Keras 3.

Public names: `SSDConfig`, `generate_anchors`, `build_model`, box coding and decoding.
Importing the package registers its custom Keras layers, so `keras.saving.load_model` needs
nothing else.
"""

from ssd_core.anchors import generate_anchors
from ssd_core.config import SSDConfig

__all__ = ["SSDConfig", "generate_anchors"]
