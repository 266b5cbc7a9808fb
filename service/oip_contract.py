"""The detection model on the Open Inference Protocol: its tensors, parameters, metadata and
configuration, the same for every model of the repository and for HTTP and gRPC.

Input `IMAGE`, BYTES, shape [-1] (or [-1, 1], as Triton's image clients send): one encoded
JPEG/PNG/BMP/WebP image per element, any size; the server decodes, resizes and scales boxes
back exactly as `/detect` does (`Runtime.detect`). Outputs, K = the request's `max_detections`
(`SSD_MAX_DETECTIONS` if unset), rows after `NUM_DETECTIONS[i]` zero / empty:

    BOXES           FP32  [-1, K, 4]  [xmin, ymin, xmax, ymax] in original-image pixels
    SCORES          FP32  [-1, K]     highest first
    CLASSES         INT32 [-1, K]     model label 1..C-1 (0 in padding)
    LABELS          BYTES [-1, K]     class name (empty in padding)
    NUM_DETECTIONS  INT32 [-1]        detections of each image

Request parameters: `score_threshold` (number 0..1), `max_detections` (integer >= 1),
`classes` (string: comma-separated class names or label ids), as on `/detect`; Triton's
`timeout` (microseconds) caps the request's deadline; the other names Triton reserves
(`priority`, `sequence_*`, `binary_data_output`, `triton_*`, ...) are accepted and have no
effect here; any other name is refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.errors import InvalidParameterError, InvalidTensorError
from service.params import split_class_list
from service.runtime import DetectParams, DetectResult
from service.settings import Settings

SERVER_NAME = "ssd-detection"
SERVER_VERSION = "1"
# Triton's names for the extensions this server implements (GET /v2, ServerMetadata).
EXTENSIONS = (
    "binary_tensor_data",
    "model_repository",
    "model_configuration",
    "statistics",
    "parameters",
)
PLATFORM = "tensorflow_keras"
MODEL_FILE = "model.keras"

IMAGE, BOXES, SCORES, CLASSES, LABELS, NUM_DETECTIONS = (
    "IMAGE", "BOXES", "SCORES", "CLASSES", "LABELS", "NUM_DETECTIONS",
)  # fmt: skip
PARAMETERS = ("score_threshold", "max_detections", "classes")
# Parameters Triton reserves for itself (its parameters extension): accepted, no effect here.
_RESERVED = frozenset(
    {"sequence_id", "sequence_start", "sequence_end", "priority", "headers", "binary_data_output"}
)
_RESERVED_PREFIX = "triton_"
_US_PER_S = 1_000_000


@dataclass(frozen=True)
class TensorSpec:
    """A tensor of the contract.

    Attributes:
        shape: as metadata reports it, batch dimension first, -1 where variable.
        dims: as the model configuration reports it (max_batch_size > 0: without the batch
            dimension); `reshape`, when not None, is the shape the model reads instead
            (dims [1] read as one element per batch item: reshape []).
    """

    name: str
    datatype: str
    shape: tuple[int, ...]
    dims: tuple[int, ...]
    reshape: tuple[int, ...] | None = None


INPUTS = (TensorSpec(IMAGE, "BYTES", (-1,), (1,), ()),)
OUTPUTS = (
    TensorSpec(BOXES, "FP32", (-1, -1, 4), (-1, 4)),
    TensorSpec(SCORES, "FP32", (-1, -1), (-1,)),
    TensorSpec(CLASSES, "INT32", (-1, -1), (-1,)),
    TensorSpec(LABELS, "BYTES", (-1, -1), (-1,)),
    TensorSpec(NUM_DETECTIONS, "INT32", (-1,), (1,), ()),
)
OUTPUT_DATATYPES = {spec.name: spec.datatype for spec in OUTPUTS}
_CONFIG_TYPES = {"BYTES": "TYPE_STRING", "FP32": "TYPE_FP32", "INT32": "TYPE_INT32"}


@dataclass(frozen=True)
class RequestOptions:
    """What the parameters of one inference request ask for."""

    params: DetectParams
    timeout_s: float | None = None  # Triton's `timeout` parameter; None: the service's


def server_metadata() -> dict[str, Any]:
    """`GET /v2` / ServerMetadata: name, version, extensions."""
    return {"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": list(EXTENSIONS)}


def model_metadata(name: str, versions: Sequence[str]) -> dict[str, Any]:
    """`GET /v2/models/{name}` / ModelMetadata in the protocol's JSON form."""
    return {
        "name": name,
        "versions": list(versions),
        "platform": PLATFORM,
        "inputs": [_tensor_metadata(spec) for spec in INPUTS],
        "outputs": [_tensor_metadata(spec) for spec in OUTPUTS],
    }


def _tensor_metadata(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "datatype": spec.datatype, "shape": list(spec.shape)}


def model_config(
    name: str,
    settings: Settings,
    batch_sizes: Sequence[int],
    class_names: Sequence[str],
    engine: Mapping[str, str],
) -> dict[str, Any]:
    """`GET /v2/models/{name}/config` / ModelConfig: Triton's model configuration in its JSON
    form (field names of model_config.proto).

    Args:
        batch_sizes: the sizes the batcher pads to (the compiled graph's batch sizes).
        class_names: the foreground classes; `class_names[i]` is label i + 1.
        engine: what runs the model (`Detector.engine`: name, precision), reported as the
            parameters `engine` and `precision`.
    """
    return {
        "name": name,
        "platform": PLATFORM,
        "backend": "",
        "runtime": "",
        "version_policy": {"latest": {"num_versions": 1}},
        "max_batch_size": settings.max_batch_size,
        "input": [_config_tensor(spec, "input") for spec in INPUTS],
        "output": [_config_tensor(spec, "output") for spec in OUTPUTS],
        "dynamic_batching": {
            "preferred_batch_size": list(batch_sizes),
            "max_queue_delay_microseconds": round(settings.max_batch_delay_ms * 1000),
            "preserve_ordering": False,
            "priority_levels": 0,
            "default_priority_level": 0,
            "default_queue_policy": {
                "timeout_action": "REJECT",
                "default_timeout_microseconds": round(settings.request_timeout_s * _US_PER_S),
                "allow_timeout_override": True,
                "max_queue_size": settings.max_queue_size,
            },
            "priority_queue_policy": {},
        },
        "instance_group": [{"name": name, "kind": "KIND_AUTO", "count": 1}],
        "default_model_filename": MODEL_FILE,
        "cc_model_filenames": {},
        "metric_tags": {},
        "parameters": {
            "class_names": {"string_value": ",".join(class_names)},
            "score_threshold": {"string_value": f"{settings.score_threshold:g}"},
            "max_detections": {"string_value": str(settings.max_detections)},
            "engine": {"string_value": engine["name"]},
            "precision": {"string_value": engine["precision"]},
        },
    }


def _config_tensor(spec: TensorSpec, kind: str) -> dict[str, Any]:
    tensor: dict[str, Any] = {
        "name": spec.name,
        "data_type": _CONFIG_TYPES[spec.datatype],
        "dims": list(spec.dims),
        "is_shape_tensor": False,
    }
    if kind == "input":
        tensor.update(format="FORMAT_NONE", allow_ragged_batch=False, optional=False)
    else:
        tensor["label_filename"] = ""
    if spec.reshape is not None:
        tensor["reshape"] = {"shape": list(spec.reshape)}
    return tensor


def check_image_type(name: str, datatype: str) -> None:
    """Check the input's name and datatype (before its elements are read).

    Raises:
        InvalidTensorError: not `IMAGE`, or not BYTES.
    """
    if name != IMAGE:
        raise InvalidTensorError(f"unknown input {name!r}; this model takes one input {IMAGE!r}")
    if datatype != "BYTES":
        raise InvalidTensorError(
            f"input {IMAGE!r} has datatype {datatype!r}; expected BYTES (encoded images)"
        )


def check_image_input(
    name: str, datatype: str, shape: Sequence[int], count: int, max_images: int
) -> None:
    """Check the request's only input against the contract (module docstring).

    Args:
        count: elements the request carried for it.
        max_images: most images one request may carry.
    Raises:
        InvalidTensorError: another name, datatype or shape, or elements missing or extra.
    """
    check_image_type(name, datatype)
    if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1) or shape[0] < 1:
        raise InvalidTensorError(
            f"input {IMAGE!r} has shape {list(shape)}; expected [B] or [B, 1], B >= 1 images"
        )
    if count != shape[0]:
        raise InvalidTensorError(
            f"input {IMAGE!r} has shape {list(shape)} but carries {count} elements"
        )
    if count > max_images:
        raise InvalidTensorError(
            f"input {IMAGE!r} carries {count} images; at most {max_images} per request "
            "(SSD_MAX_QUEUE_SIZE), send the rest in another request"
        )


def output_names(requested: Sequence[str]) -> tuple[str, ...]:
    """The outputs to answer, in the order asked (none asked: all, in contract order).

    Raises:
        InvalidTensorError: an unknown or repeated output name.
    """
    if not requested:
        return tuple(spec.name for spec in OUTPUTS)
    for name in requested:
        if name not in OUTPUT_DATATYPES:
            raise InvalidTensorError(
                f"unknown output {name!r}; this model has outputs {list(OUTPUT_DATATYPES)}"
            )
    if len(set(requested)) != len(requested):
        raise InvalidTensorError(f"output requested more than once in {list(requested)}")
    return tuple(requested)


def request_options(parameters: Mapping[str, Any]) -> RequestOptions:
    """The request parameters (name -> bool, int, float or str) as detection options.

    Raises:
        InvalidParameterError: an unknown parameter, or a value of the wrong type.
    """
    unknown = [
        key
        for key in parameters
        if key not in (*PARAMETERS, "timeout")
        and key not in _RESERVED
        and not key.startswith(_RESERVED_PREFIX)
    ]
    if unknown:
        raise InvalidParameterError(
            f"unknown parameter {unknown[0]!r}; this model takes {list(PARAMETERS)}"
        )
    score = parameters.get("score_threshold")
    if score is not None and (isinstance(score, bool) or not isinstance(score, int | float)):
        raise InvalidParameterError(f"score_threshold must be a number, got {score!r}")
    params = DetectParams(
        score_threshold=None if score is None else float(score),
        max_detections=_integer(parameters, "max_detections"),
        classes=_classes(parameters.get("classes")),
    )
    timeout_us = _integer(parameters, "timeout")
    timeout_s = timeout_us / _US_PER_S if timeout_us else None
    return RequestOptions(params=params, timeout_s=timeout_s)


def _integer(parameters: Mapping[str, Any], key: str) -> int | None:
    value = parameters.get(key)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParameterError(f"{key} must be an integer, got {value!r}")
    return value


def _classes(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return split_class_list(value)
    raise InvalidParameterError(
        f"classes must be a string of comma-separated class names or label ids, got {value!r}"
    )


def detections_to_tensors(results: Sequence[DetectResult], k: int) -> dict[str, np.ndarray]:
    """The output tensors of B images' results; the one place detections become tensors.

    Args:
        results: one per image, in request order.
        k: rows per image (the request's max_detections); an image's detections beyond k
            are dropped, rows after its NUM_DETECTIONS are zero (LABELS: empty).
    Returns:
        Every output of the contract by name: BOXES (B, K, 4) float32 pixel xyxy, SCORES
        (B, K) float32, CLASSES (B, K) int32, LABELS (B, K) object array of bytes,
        NUM_DETECTIONS (B,) int32.
    """
    count = len(results)
    boxes = np.zeros((count, k, 4), dtype=np.float32)
    scores = np.zeros((count, k), dtype=np.float32)
    classes = np.zeros((count, k), dtype=np.int32)
    labels = np.full((count, k), b"", dtype=object)
    found = np.zeros((count,), dtype=np.int32)
    for i, result in enumerate(results):
        detections = result.detections
        n = found[i] = min(len(detections), k)
        boxes[i, :n] = detections.boxes[:n]
        scores[i, :n] = detections.scores[:n]
        classes[i, :n] = detections.labels[:n]
        labels[i, :n] = [name.encode("utf-8") for name in detections.names[:n]]
    return {
        BOXES: boxes,
        SCORES: scores,
        CLASSES: classes,
        LABELS: labels,
        NUM_DETECTIONS: found,
    }
