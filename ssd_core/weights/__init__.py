"""Weights I/O: the published Caffe SSD models, the ssd_keras HDF5 port, class sub-sampling.

- `load_caffe_weights(model, path, base_only=False)`: a `.caffemodel` (full SSD, or the VGG-16
  fc-reduced base with `base_only=True`), by Caffe layer name.
- `load_ssd_keras_weights(model, path, base_only=False)`: an ssd_keras HDF5 weight file.
- `subsample_classes(model, keep)`: a model of the kept classes, for fine-tuning.

Every loader checks every layer and shape before it writes anything and raises
`WeightFileError` naming the layer, the expected and the found shape.
"""

from ssd_core.weights.assign import WeightFileError
from ssd_core.weights.caffe import load_caffe_weights, read_caffemodel, write_caffemodel
from ssd_core.weights.ssd_keras import load_ssd_keras_weights, read_ssd_keras_h5
from ssd_core.weights.subsample import subsample_classes

__all__ = [
    "WeightFileError",
    "load_caffe_weights",
    "load_ssd_keras_weights",
    "read_caffemodel",
    "read_ssd_keras_h5",
    "subsample_classes",
    "write_caffemodel",
]
