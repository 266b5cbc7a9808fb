"""`SSDConfig` from a Caffe SSD `deploy.prototxt` (`SSDConfig.from_caffe_prototxt`).

Read from the prototxt: the input size; the backbone family and its extra-layer layout
(recognised from the layer names: the registered backbone whose Caffe-named layers the net
has); every `PriorBox` (min/max size, aspect ratios with flip, step, offset, clip, variances),
in the order `DetectionOutput` concatenates them; the heads' channel counts (checked against
the anchors); and the `DetectionOutput` (classes, confidence and NMS thresholds, top_k,
keep_top_k), which becomes `config.extra["decoder"]`, the `DecoderConfig` (as a dict) that
reproduces it (with `clip=False`: Caffe does not clip decoded boxes).

Not in a prototxt: the input mean, the class names and a model name. They come from the
preset of the recognised family with the same backbone, layout, input size and class count
(`ssd300_voc`, `ssd300_res10_face`, ...) or from the caller.

Every layer must be understood: a weighted layer (Convolution, BatchNorm, Scale, Normalize)
or a Pooling / Eltwise layer that the backbone does not build, a convolution whose
`convolution_param` differs from the backbone's, or a layer type SSD does not use is refused
with the layer's name.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ssd_core.backbones import BACKBONE_NAMES, Geometry, geometry, get_backbone
from ssd_core.config import SSDConfig
from ssd_core.decoder_config import DecoderConfig
from ssd_core.weights.prototxt import CaffeLayer, CaffeNet, PrototxtError, read_prototxt

logger = logging.getLogger(__name__)

WEIGHTED_TYPES = ("Convolution", "BatchNorm", "Scale", "Normalize")
NAMED_TYPES = ("Pooling", "Eltwise")  # no weights, but part of the backbone: checked by name
# Layers of SSD's head and decoding, and in-place activations / inference no-ops.
PLUMBING_TYPES = (
    "ReLU", "Permute", "Flatten", "Concat", "PriorBox", "Reshape", "Softmax", "DetectionOutput",
    "Dropout", "Split", "Silence",
)  # fmt: skip
# Caffe defaults (caffe.proto of the SSD release): PriorBoxParameter, DetectionOutputParameter.
PRIOR_BOX_DEFAULTS: dict[str, Any] = {
    "offset": 0.5,
    "clip": False,
    "flip": True,
    "variance": (0.1,),
}
DEFAULT_NMS_THRESHOLD = 0.3
CENTER_SIZE = ("CENTER_SIZE", 2)  # PriorBoxParameter.CodeType, by name or number


def config_from_prototxt(
    path: str | Path,
    *,
    name: str | None = None,
    class_names: Sequence[str] | None = None,
    pixel_mean: Sequence[float] | None = None,
) -> SSDConfig:
    """The `SSDConfig` of a Caffe SSD `deploy.prototxt` (see the module docstring).

    Args:
        path: the prototxt.
        name: the config name; default the matching preset's, else the net's `name:`.
        class_names: foreground class names; default the matching preset's.
        pixel_mean: RGB mean on 0..255 subtracted from the input; default the family's.

    Raises:
        PrototxtError: the net holds a layer the recognised backbone does not know, its
            anchors cannot be expressed as an `SSDConfig`, or a default is missing.
    """
    net = read_prototxt(path)
    detection = _detection_output(net, path)
    priors = _prior_boxes(net, detection, path)
    sources = tuple(source for source, _ in priors)
    backbone, layout = _recognise_backbone(net, sources, path)
    num_classes = int(detection.param("detection_output_param")["num_classes"][0])
    anchors = _anchor_fields(net, priors, num_classes, path)
    family = _family_defaults(backbone, layout, net.input_size, num_classes)
    if class_names is None and "class_names" not in family:
        raise PrototxtError(
            f"{path}: no preset of backbone {backbone!r} has {num_classes} classes; "
            f"name the {num_classes - 1} foreground classes (--class-names)"
        )
    config = SSDConfig(
        name=name or family.get("name", net.name),
        backbone=backbone,
        extra_layers=layout,
        image_size=net.input_size,
        num_classes=num_classes,
        class_names=tuple(class_names) if class_names is not None else family["class_names"],
        source_layers=sources,
        integer_anchor_sizes=True,  # Caffe's PriorBox truncates sizes to int
        pixel_mean=_rgb(pixel_mean) if pixel_mean is not None else family["pixel_mean"],
        pixel_std=family["pixel_std"],
        channel_order=family["channel_order"],
        extra={
            "decoder": _decoder_config(detection).to_dict(),
            "caffe_prototxt": Path(path).name,
        },
        **anchors,
    )
    logger.info("%s: %s", path, config.to_json(indent=None))
    return config


# --- DetectionOutput and PriorBox --------------------------------------------------------------


def _detection_output(net: CaffeNet, path: str | Path) -> CaffeLayer:
    found = [layer for layer in net.layers if layer.type == "DetectionOutput"]
    if len(found) != 1:
        raise PrototxtError(f"{path}: expected one DetectionOutput layer, found {len(found)}")
    param = found[0].param("detection_output_param")
    checks = {
        "share_location": (param.get("share_location", [True])[0], True),
        "background_label_id": (param.get("background_label_id", [0])[0], 0),
        "variance_encoded_in_target": (param.get("variance_encoded_in_target", [False])[0], False),
    }
    for field, (value, supported) in checks.items():
        if value != supported:
            raise PrototxtError(f"{path}: DetectionOutput {field}: {value} is not supported")
    code_type = param.get("code_type", ["CORNER"])[0]
    if code_type not in CENTER_SIZE:
        raise PrototxtError(f"{path}: DetectionOutput code_type {code_type} is not CENTER_SIZE")
    if "num_classes" not in param:
        raise PrototxtError(f"{path}: DetectionOutput has no num_classes")
    return found[0]


def _rgb(values: Sequence[float]) -> tuple[float, float, float]:
    """Three values (R, G, B); SSDConfig refuses any other count."""
    if len(values) != 3:
        raise ValueError(f"pixel_mean and pixel_std need 3 values (RGB), got {list(values)}")
    red, green, blue = (float(v) for v in values)
    return red, green, blue


def _decoder_config(detection: CaffeLayer) -> DecoderConfig:
    """The `DecoderConfig` equal to a Caffe DetectionOutput (unset values: the defaults)."""
    param = detection.param("detection_output_param")
    nms = param.get("nms_param", [{}])[0]
    default = DecoderConfig()
    keep_top_k = int(param.get("keep_top_k", [-1])[0])
    return DecoderConfig(
        method="caffe",
        score_threshold=float(param.get("confidence_threshold", [default.score_threshold])[0]),
        iou_threshold=float(nms.get("nms_threshold", [DEFAULT_NMS_THRESHOLD])[0]),
        top_k=int(nms.get("top_k", [default.top_k])[0]),
        max_detections=keep_top_k if keep_top_k > 0 else default.max_detections,
        clip=False,
    )


def _prior_boxes(
    net: CaffeNet, detection: CaffeLayer, path: str | Path
) -> list[tuple[str, CaffeLayer]]:
    """(source name, PriorBox layer) in the order DetectionOutput concatenates the priors.

    The source name is the prefix of the `<source>_mbox_loc` convolution reading the same
    blob (the face detector's `conv6_2_mbox_loc` reads `conv6_2_h`).
    """
    producers = {top: layer for layer in net.layers for top in layer.tops}
    prior_layers = [layer for layer in net.layers if layer.type == "PriorBox"]
    if len(detection.bottoms) == 3 and detection.bottoms[2] in producers:
        concat = producers[detection.bottoms[2]]
        if concat.type == "Concat":
            prior_layers = [producers[bottom] for bottom in concat.bottoms]
    if not prior_layers or any(layer.type != "PriorBox" for layer in prior_layers):
        raise PrototxtError(f"{path}: DetectionOutput's priors are not PriorBox layers")
    result = []
    for prior in prior_layers:
        blob = prior.bottoms[0]
        heads = [
            layer.name.removesuffix("_mbox_loc")
            for layer in net.layers
            if layer.type == "Convolution" and layer.name.endswith("_mbox_loc")
            and layer.bottoms[:1] == (blob,)
        ]  # fmt: skip
        if len(heads) != 1:
            raise PrototxtError(
                f"{path}: PriorBox {prior.name!r} reads blob {blob!r}, which feeds "
                f"{len(heads)} <source>_mbox_loc convolutions (expected one)"
            )
        result.append((heads[0], prior))
    return result


def _aspect_ratios(param: dict[str, list[Any]]) -> tuple[float, ...]:
    """Caffe PriorBox's ratio list: 1 first, then each new ratio and (flip) its inverse."""
    flip = _get(param, "flip")
    ratios = [1.0]
    for ratio in param.get("aspect_ratio", []):
        ratio = float(ratio)
        if any(abs(ratio - known) < 1e-6 for known in ratios):
            continue
        ratios.append(ratio)
        if flip:
            ratios.append(1.0 / ratio)
    return tuple(ratios)


def _get(param: dict[str, list[Any]], key: str) -> Any:
    return param.get(key, [PRIOR_BOX_DEFAULTS[key]])[0]


def _one(values: list[Any], what: str, layer: CaffeLayer, path: str | Path) -> Any:
    if len(values) != 1:
        raise PrototxtError(f"{path}: PriorBox {layer.name!r} needs one {what}, got {values}")
    return values[0]


def _same(values: list[Any], what: str, path: str | Path) -> Any:
    if any(value != values[0] for value in values):
        raise PrototxtError(f"{path}: every PriorBox must share {what}; got {values}")
    return values[0]


def _anchor_fields(
    net: CaffeNet, priors: list[tuple[str, CaffeLayer]], num_classes: int, path: str | Path
) -> dict[str, Any]:
    """The SSDConfig anchor fields of the PriorBox layers, with the heads' channels checked."""
    params = [prior.param("prior_box_param") for _, prior in priors]
    min_sizes = [
        float(_one(param.get("min_size", []), "min_size", layer, path))
        for (_, layer), param in zip(priors, params, strict=True)
    ]
    max_sizes = [p.get("max_size", []) for p in params]
    two_boxes = _same([bool(m) for m in max_sizes], "having a max_size or not", path)
    min_dim = min(net.input_size)
    sizes = [*min_sizes, float(max_sizes[-1][0]) if two_boxes else min_sizes[-1]]
    for k in range(len(priors) - 1):
        if two_boxes and float(max_sizes[k][0]) != min_sizes[k + 1]:
            raise PrototxtError(
                f"{path}: PriorBox {priors[k][1].name!r} max_size {max_sizes[k][0]} differs from "
                f"the next layer's min_size {min_sizes[k + 1]}; SSDConfig.scales cannot hold it"
            )
    steps = []
    for (_, layer), param in zip(priors, params, strict=True):
        step_h = param.get("step_h", param.get("step", [None]))[0]
        step_w = param.get("step_w", param.get("step", [None]))[0]
        if step_h != step_w:
            raise PrototxtError(f"{path}: PriorBox {layer.name!r} has step_h != step_w")
        steps.append(None if step_h is None else float(step_h))
    variances = []
    for param in params:
        values = tuple(float(v) for v in param.get("variance", PRIOR_BOX_DEFAULTS["variance"]))
        variances.append(values * 4 if len(values) == 1 else values)  # one value: all four
    variance = _same(variances, "the variances", path)
    fields = {
        "scales": tuple(round(size / min_dim, 10) for size in sizes),
        "aspect_ratios": tuple(_aspect_ratios(p) for p in params),
        "two_boxes_for_ar1": two_boxes,
        "steps": None if all(s is None for s in steps) else tuple(steps),
        "offsets": float(_same([_get(p, "offset") for p in params], "offset", path)),
        "clip": bool(_same([_get(p, "clip") for p in params], "clip", path)),
        "variances": variance,
    }
    _check_head_channels(net, priors, fields, num_classes, path)
    return fields


def _check_head_channels(
    net: CaffeNet,
    priors: list[tuple[str, CaffeLayer]],
    fields: dict[str, Any],
    num_classes: int,
    path: str | Path,
) -> None:
    extra = 1 if fields["two_boxes_for_ar1"] else 0
    for (source, _), ratios in zip(priors, fields["aspect_ratios"], strict=True):
        boxes = len(ratios) + extra
        for head, values in (("mbox_loc", 4), ("mbox_conf", num_classes)):
            layer = net.layer(f"{source}_{head}")
            if layer is None:
                raise PrototxtError(f"{path}: head {source}_{head} is missing")
            channels = int(layer.param("convolution_param")["num_output"][0])
            if channels != boxes * values:
                raise PrototxtError(
                    f"{path}: head {layer.name!r} has {channels} outputs; its PriorBox gives "
                    f"{boxes} boxes x {values} = {boxes * values}"
                )


# --- the backbone --------------------------------------------------------------------------------


def _backbone_layers(net: CaffeNet, sources: tuple[str, ...]) -> list[CaffeLayer]:
    """The net's layers that belong to the backbone: everything but heads and plumbing."""
    heads = {f"{source}_{head}" for source in sources for head in ("mbox_loc", "mbox_conf")}
    return [
        layer
        for layer in net.layers
        if layer.name not in heads and layer.type not in PLUMBING_TYPES
    ]


def _recognise_backbone(
    net: CaffeNet, sources: tuple[str, ...], path: str | Path
) -> tuple[str, str]:
    """(backbone, layout) whose Caffe-named layers the net has; refuses unknown layers."""
    layers = _backbone_layers(net, sources)
    weighted = {layer.name for layer in layers if layer.type in WEIGHTED_TYPES}
    candidates = []
    for name in BACKBONE_NAMES:
        for layout in get_backbone(name).layouts:
            try:
                known = geometry(name, layout, net.input_size)
            except ValueError:  # this backbone cannot take the net's input size
                continue
            overlap = len(weighted & set(known.weighted))
            exact = weighted == set(known.weighted)
            candidates.append((exact, overlap, len(known.weighted), name, layout, known))
    exact, overlap, _, name, layout, known = max(candidates, key=lambda c: c[:3])
    if overlap == 0:
        raise PrototxtError(f"{path}: no registered backbone {BACKBONE_NAMES} has its layers")
    _check_layers(layers, known, f"{path}: backbone {name!r} (extra_layers {layout!r})")
    offered = get_backbone(name).layouts[layout]
    if offered[: len(sources)] != sources:
        raise PrototxtError(
            f"{path}: predictor sources {sources} are not the {name} {layout} sources {offered}"
        )
    return name, layout


def _check_layers(layers: list[CaffeLayer], known: Geometry, where: str) -> None:
    """Raise PrototxtError naming the first layer the backbone does not build as the net does."""
    weighted = set(known.weighted)
    for layer in layers:
        if layer.type in WEIGHTED_TYPES and layer.name not in weighted:
            raise PrototxtError(f"{where} has no layer {layer.name!r} ({layer.type})")
        if layer.type in NAMED_TYPES and layer.name not in known.layers:
            raise PrototxtError(f"{where} has no layer {layer.name!r} ({layer.type})")
        if layer.type not in (*WEIGHTED_TYPES, *NAMED_TYPES):
            raise PrototxtError(f"{where}: layer {layer.name!r} of type {layer.type!r} is unknown")
        if layer.type == "Convolution":
            _check_convolution(layer, known, where)
    present = {layer.name for layer in layers}
    missing = [name for name in known.weighted if name not in present]
    if missing:
        raise PrototxtError(f"{where}: the net lacks layer(s) {missing}")


def _check_convolution(layer: CaffeLayer, known: Geometry, where: str) -> None:
    param = layer.param("convolution_param")
    expected = known.convolutions[layer.name]
    found = {
        "num_output": int(param.get("num_output", [0])[0]),
        "kernel_size": int(param.get("kernel_size", param.get("kernel_h", [0]))[0]),
        "stride": int(param.get("stride", param.get("stride_h", [1]))[0]),
        "dilation": int(param.get("dilation", [1])[0]),
        "bias_term": bool(param.get("bias_term", [True])[0]),
    }
    for field, value in found.items():
        if getattr(expected, field) != value:
            raise PrototxtError(
                f"{where}: layer {layer.name!r} has {field} {value}, the backbone's has "
                f"{getattr(expected, field)}"
            )


# --- what the prototxt does not say --------------------------------------------------------------


def _family_defaults(
    backbone: str, layout: str, image_size: tuple[int, int], num_classes: int
) -> dict[str, Any]:
    """Name, class names and input normalisation of the published model of this family."""
    from ssd_core.presets import PRESETS

    family = [
        preset
        for preset in PRESETS.values()
        if preset["backbone"] == backbone
        and (preset.get("extra_layers") or get_backbone(backbone).default_layout) == layout
    ]
    if not family:
        raise PrototxtError(f"no preset of backbone {backbone!r} ({layout}) gives its input mean")
    same = [
        preset
        for preset in family
        if preset["num_classes"] == num_classes and tuple(preset["image_size"]) == image_size
    ]
    chosen = same[0] if same else family[0]
    defaults = {key: chosen[key] for key in ("pixel_mean", "pixel_std", "channel_order")}
    if same:
        defaults.update(name=chosen["name"], class_names=tuple(chosen["class_names"]))
    return defaults
