"""Export a trained SSD for serving: a TF SavedModel (TF Serving), a Triton model repository,
ONNX (through tf2onnx, optional), and LiteRT / TFLite (mobile and edge).

The serving signature takes what a client has after decoding and resizing an image:
`images` (B, H, W, 3) uint8 RGB at the model's input size `config.image_size` (clients resize
with the config's policy `config.resize`, as `ssd_core.inference.resize_image` does, and map
the boxes back with its `Placement`; the graph does neither). It returns the decoded, padded
detections of the inference model:

- `boxes` (B, K, 4) float32, normalised [xmin, ymin, xmax, ymax];
- `scores` (B, K) float32;
- `labels` (B, K) int32, labels 1..C-1 (`config.label_names`);
- `num_detections` (B,) int32, the number of valid rows of each image.

The SSDConfig and the DecoderConfig are written next to the SavedModel as
`assets.extra/ssd_config.json` and `assets.extra/decoder_config.json`, where TF Serving and
Triton ignore them and clients can read the class names, the resize policy and the decoder's
thresholds.

Every output is written under a temporary name and renamed into place when complete
(`ssd_core.atomic_write`), so an interrupted export never leaves a half-written model where a
server would load it; an existing non-empty SavedModel directory is never replaced.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import keras
import tensorflow as tf

from ssd_core.atomic_write import atomic_path, write_bytes, write_text
from ssd_core.decoder_config import DecoderConfig
from ssd_core.inference.loading import as_inference
from ssd_core.model import SSD

logger = logging.getLogger(__name__)

SIGNATURE = "serving_default"
INPUT_NAME = "images"
CONFIG_ASSET = Path("assets.extra") / "ssd_config.json"
DECODER_ASSET = Path("assets.extra") / "decoder_config.json"

# Triton's names for the tensor types our signature uses (model_config.proto DataType).
TRITON_TYPES = {"uint8": "TYPE_UINT8", "float32": "TYPE_FP32", "int32": "TYPE_INT32"}

TensorSpecs = dict[str, tuple[str, tuple[int, ...]]]
"""Tensor name -> (dtype name, shape without the batch dimension)."""


def serving_specs(model: SSD) -> tuple[TensorSpecs, TensorSpecs]:
    """Input and output specs of the serving signature of the inference `model`."""
    height, width = model.ssd_config.image_size
    inputs: TensorSpecs = {INPUT_NAME: ("uint8", (height, width, 3))}
    outputs: TensorSpecs = {
        name: (keras.backend.standardize_dtype(tensor.dtype), tuple(tensor.shape[1:]))
        for name, tensor in model.output.items()
    }
    return inputs, outputs


def export_savedmodel(
    model: SSD, out_dir: str | Path, decoder_config: DecoderConfig | None = None
) -> Path:
    """Write `model` (either mode) as a SavedModel with a uint8 `serving_default` signature.

    Args:
        model: the SSD to export; a training-mode model is converted to inference mode.
        out_dir: the SavedModel directory (created; must be missing or empty).
        decoder_config: the exported graph's decoder; None: the model's own.

    Returns:
        `out_dir` as a Path.

    Raises:
        FileExistsError: `out_dir` exists and is not an empty directory.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not (out_dir.is_dir() and not any(out_dir.iterdir())):
        what = "a SavedModel" if (out_dir / "saved_model.pb").exists() else "other files"
        raise FileExistsError(f"{out_dir} already holds {what}; choose a new directory")
    served = as_inference(model, decoder_config)
    height, width = served.ssd_config.image_size

    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return served(tf.cast(images, tf.float32), training=False)

    archive = keras.export.ExportArchive()
    archive.track(served)
    archive.add_endpoint(
        name=SIGNATURE,
        fn=serve,
        input_signature=[tf.TensorSpec((None, height, width, 3), tf.uint8, name=INPUT_NAME)],
    )
    with atomic_path(out_dir) as partial:
        archive.write_out(str(partial), verbose=False)
        (partial / CONFIG_ASSET).parent.mkdir(parents=True, exist_ok=True)
        served.ssd_config.save(partial / CONFIG_ASSET)
        write_text(partial / DECODER_ASSET, served.decoder_config.to_json())
    logger.info("wrote SavedModel %s (signature %s)", out_dir, SIGNATURE)
    return out_dir


def triton_config_pbtxt(
    name: str,
    inputs: TensorSpecs,
    outputs: TensorSpecs,
    max_batch_size: int = 8,
    max_queue_delay_us: int = 2000,
) -> str:
    """The `config.pbtxt` of a batching `tensorflow_savedmodel` Triton model.

    Shapes are given without the batch dimension; a tensor that is only the batch dimension
    (`num_detections`) is declared as `dims: [ 1 ]` reshaped to `[ ]`, as Triton requires.
    """
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be >= 1 for dynamic batching, got {max_batch_size}")
    lines = [
        f'name: "{name}"',
        'platform: "tensorflow_savedmodel"',
        f"max_batch_size: {max_batch_size}",
        "input [",
        _tensor_entries(inputs),
        "]",
        "output [",
        _tensor_entries(outputs),
        "]",
        "dynamic_batching {",
        f"  max_queue_delay_microseconds: {max_queue_delay_us}",
        "}",
    ]
    return "\n".join(lines) + "\n"


def write_triton_repository(
    model: SSD,
    repository: str | Path,
    name: str | None = None,
    version: int = 1,
    max_batch_size: int = 8,
    max_queue_delay_us: int = 2000,
    decoder_config: DecoderConfig | None = None,
) -> Path:
    """Lay out `<repository>/<name>/config.pbtxt` and `<name>/<version>/model.savedmodel`.

    Returns:
        The model directory `<repository>/<name>`.
    """
    served = as_inference(model, decoder_config)
    name = name or served.ssd_config.name
    model_dir = Path(repository) / name
    export_savedmodel(served, model_dir / str(version) / "model.savedmodel")
    inputs, outputs = serving_specs(served)
    config = triton_config_pbtxt(name, inputs, outputs, max_batch_size, max_queue_delay_us)
    write_text(model_dir / "config.pbtxt", config)
    logger.info("wrote Triton model %s (max_batch_size %d)", model_dir, max_batch_size)
    return model_dir


def export_onnx(
    model: SSD,
    out_file: str | Path,
    opset: int = 17,
    decoder_config: DecoderConfig | None = None,
) -> Path:
    """Write the serving graph as ONNX with tf2onnx (an optional dependency).

    Raises:
        ImportError: tf2onnx is not installed.
    """
    import tf2onnx  # optional: not a project dependency, see the README

    served = as_inference(model, decoder_config)
    height, width = served.ssd_config.image_size

    signature = [tf.TensorSpec((None, height, width, 3), tf.uint8, name=INPUT_NAME)]

    @tf.function(input_signature=signature)
    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return served(tf.cast(images, tf.float32), training=False)

    out_file = Path(out_file)
    with atomic_path(out_file) as partial:
        tf2onnx.convert.from_function(
            serve, input_signature=signature, opset=opset, output_path=str(partial)
        )
    logger.info("wrote ONNX model %s (opset %d)", out_file, opset)
    return out_file


def _tensor_entries(specs: Mapping[str, tuple[str, tuple[int, ...]]]) -> str:
    entries = []
    for tensor_name, (dtype, dims) in specs.items():
        if dtype not in TRITON_TYPES:
            raise ValueError(
                f"tensor {tensor_name!r} has dtype {dtype}; Triton map has {list(TRITON_TYPES)}"
            )
        fields = [f'name: "{tensor_name}"', f"data_type: {TRITON_TYPES[dtype]}"]
        if dims:
            fields.append(f"dims: [ {', '.join(str(d) for d in dims)} ]")
        else:
            fields.append("dims: [ 1 ]")
            fields.append("reshape: { shape: [ ] }")
        entries.append("  {\n" + "\n".join(f"    {f}" for f in fields) + "\n  }")
    return ",\n".join(entries)


def export_litert(
    model: SSD, out_file: str | Path, decoder_config: DecoderConfig | None = None
) -> Path:
    """Write the serving graph - network and decoder - as a LiteRT (TFLite) flatbuffer.

    The decoder goes in-graph: the SavedModel signature (`export_savedmodel`) converts with
    TFLite builtin ops only (its NMS is TF ops, `ssd_core.postprocess`: WHILE loops, gathers,
    matrix ops), so the file runs in any LiteRT interpreter with no Flex delegate and no custom
    op, with the Caffe `DetectionOutput` semantics of the other exports. The
    `TFLite_Detection_PostProcess` custom op was not used: its NMS and output layout ([ymin,
    xmin, ymax, xmax] boxes, 0-based float classes) differ from this decoder's.

    Input `images` (B, H, W, 3) uint8, batch 1 as allocated (resize the input tensor for
    another batch size); outputs `boxes`, `scores`, `labels`, `num_detections` as the
    SavedModel's (the signature runner names them). The SSDConfig (class names, input size) is
    written beside the file as `<out_file stem>.json`.

    Args:
        model: the SSD (either mode; a training-mode model is converted to inference mode).
        out_file: the `.tflite` file to write (replaced if it exists).
        decoder_config: the exported graph's decoder; None: the model's own.

    Returns:
        `out_file` as a Path.
    """
    import tempfile

    served = as_inference(model, decoder_config)
    out_file = Path(out_file)
    with tempfile.TemporaryDirectory(prefix="ssd_litert_") as tmp:
        saved = export_savedmodel(served, Path(tmp) / "savedmodel")
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved), [SIGNATURE])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        flatbuffer = converter.convert()
    write_bytes(out_file, flatbuffer)
    served.ssd_config.save(litert_config_path(out_file))
    logger.info("wrote LiteRT model %s (%d bytes)", out_file, len(flatbuffer))
    return out_file


def litert_config_path(out_file: str | Path) -> Path:
    """Where `export_litert` writes the SSDConfig of `out_file`: `<stem>.json` beside it."""
    return Path(out_file).with_suffix(".json")
