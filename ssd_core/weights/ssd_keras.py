"""ssd_keras HDF5 weights (the Keras 2 port of SSD): read the file, load it into our model.

The port saved its models with Keras 2 `save_weights` (or `save`, which puts the same layout
under a `model_weights` group):

- root attribute `layer_names`: the model's layer names, in order;
- one group per layer, with attribute `weight_names` (e.g. `conv1_1/kernel:0`,
  `conv1_1/bias:0`, `conv4_3_norm/gamma:0`) listing its weights in layer order;
- one dataset per weight at `<layer>/<weight name>`, so `conv1_1/conv1_1/kernel:0`.

Attributes too large for an HDF5 object header are split by Keras 2 into `layer_names0`,
`layer_names1`, ...; both forms are read. Kernels are already in Keras layout
(kh, kw, in, out), the port keeps the Caffe layer names and the Caffe head channel layout, and
its graph also swaps RGB to BGR before conv1_1, so the arrays are used unchanged.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import keras
import numpy as np

from ssd_core.input_files import describe
from ssd_core.weights import assign

KerasWeights = dict[str, list[np.ndarray]]
"""Layer name -> weight arrays in Keras layout and `weight_names` order."""


def read_ssd_keras_h5(path: str | Path) -> KerasWeights:
    """Read every layer that holds weights from a Keras 2 HDF5 weight (or model) file.

    Raises:
        WeightFileError: the file is not a readable HDF5 file (truncated, another format), or
            lacks the `layer_names` / `weight_names` attributes or a listed weight dataset.
    """
    try:
        return _read_weights(path)
    except OSError as error:  # h5py's error for a truncated or non-HDF5 file, no file name in it
        raise assign.WeightFileError(
            f"{path}: not a readable HDF5 file (truncated or another format; {describe(error)})"
        ) from error


def _read_weights(path: str | Path) -> KerasWeights:
    weights: KerasWeights = {}
    with h5py.File(path, "r") as file:
        root = file.get("model_weights", file)
        layer_names = _string_list_attr(root, "layer_names")
        if layer_names is None:
            raise assign.WeightFileError(
                f"{path}: no 'layer_names' attribute; not a Keras 2 HDF5 weight file"
            )
        for layer_name in layer_names:
            group = root.get(layer_name)
            if group is None:
                raise assign.WeightFileError(
                    f"{path}: layer {layer_name!r} is listed but has no group"
                )
            weight_names = _string_list_attr(group, "weight_names") or []
            arrays = []
            for weight_name in weight_names:
                if weight_name not in group:
                    raise assign.WeightFileError(
                        f"{path}: layer {layer_name!r} lists weight {weight_name!r} "
                        "but the file has no such dataset"
                    )
                arrays.append(np.asarray(group[weight_name], dtype=np.float32))
            if arrays:
                weights[layer_name] = arrays
    return weights


def load_ssd_keras_weights(model: keras.Model, path: str | Path, base_only: bool = False) -> None:
    """Load an ssd_keras HDF5 file into `model` in place, by layer name.

    Args:
        model: a model from `ssd_core.build_model` (either mode).
        path: the `.h5` file (a full SSD model, or the port's VGG-16 fc-reduced base).
        base_only: load only conv1_1 ... fc7 and keep every other layer as initialised.

    Raises:
        WeightFileError: a layer the model needs is missing or mis-shaped in the file.
    """
    source = str(path)
    file_weights = read_ssd_keras_h5(path)
    names = assign.layers_to_load(model, base_only)
    for name in names:
        assign.check_layer_present(name, file_weights, source)
    assign.set_weights_checked(model, {name: file_weights[name] for name in names}, source)
    assign.log_unused(file_weights, names, source)


def _string_list_attr(group: h5py.Group, name: str) -> list[str] | None:
    """A list-of-strings attribute, joined from Keras 2's `name0`, `name1`, ... chunks if split."""
    if name in group.attrs:
        values = list(group.attrs[name])
    elif f"{name}0" in group.attrs:
        values, chunk = [], 0
        while f"{name}{chunk}" in group.attrs:
            values.extend(group.attrs[f"{name}{chunk}"])
            chunk += 1
    else:
        return None
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]
