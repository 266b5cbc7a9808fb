"""ssd_core: SSD300 / SSD512 / SSD7 (VGG-16, ResNet-10, SSD7 backbones) in TensorFlow 2 / Keras 3.

Public names: `SSDConfig`, `DecoderConfig`, `generate_anchors`, `build_model`, box coding and
decoding; `ssd_core.inference` runs a saved model from image to pixel detections.
Importing the package registers its custom Keras layers, so `keras.saving.load_model` needs
nothing else.
"""

from ssd_core.anchors import generate_anchors
from ssd_core.assets import default_model_path, embedded_models
from ssd_core.box_coder import decode_boxes, encode_boxes
from ssd_core.config import SSDConfig
from ssd_core.decoder_config import DecoderConfig
from ssd_core.layers import ImageNormalization, L2Normalization
from ssd_core.model import SSD, build_model, to_inference
from ssd_core.postprocess import DetectionDecoder, decode_detections

__all__ = [
    "SSD",
    "DecoderConfig",
    "ImageNormalization",
    "L2Normalization",
    "build_model",
    "default_model_path",
    "embedded_models",
    "to_inference",
    "SSDConfig",
    "generate_anchors",
    "encode_boxes",
    "decode_boxes",
    "decode_detections",
    "DetectionDecoder",
]
