"""`SSDConfig`: every number that defines an SSD model, serialisable to and from JSON.

A config travels with every saved model, so a `.keras` file, an exported SavedModel and the
service all agree on input size, class names, anchors and box coding.

Conventions:
- `num_classes` counts the background class, which is label 0. `class_names` names the
  foreground classes only: `class_names[i]` is label `i + 1`.
- `image_size` is `(height, width)` in pixels.
- `aspect_ratios[k]` lists the box aspect ratios (width / height) of predictor layer `k` in the
  order the boxes are laid out per location; `1.0` must come first (Caffe's PriorBox order).
  With `two_boxes_for_ar1` an extra ratio-1 box of size `sqrt(s_k * s_k+1)` follows it.
- `scales` has one value per predictor layer plus one; scale `k` times the shorter image side
  is the anchor size of layer `k`.
- `steps[k]` is the anchor centre spacing in pixels, `None` for `image_size / feature size`.
- `extra_layers` names the backbone's layout of extra layers (`"ssd300"` / `"ssd512"` for
  vgg16); `source_layers` must be a prefix of that layout's sources.
- `pixel_mean` / `pixel_std` are in RGB order on 0..255 input; `channel_order` is the order the
  network sees after normalisation (the Caffe VGG weights expect "bgr").
- `resize` is how an image of any size becomes the model input at inference
  (`ssd_core.inference.preprocess`): `"stretch"` (both sides scaled to `image_size`, the
  Caffe/SSD default) or `"letterbox"` (aspect ratio kept, the rest padded with `pixel_mean`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssd_core.atomic_write import write_text
from ssd_core.backbones import BACKBONE_NAMES as BACKBONES
from ssd_core.input_files import InputFileError, describe, require_file

CHANNEL_ORDERS = ("rgb", "bgr")
RESIZE_POLICIES = ("stretch", "letterbox")


@dataclass(frozen=True)
class SSDConfig:
    name: str
    backbone: str
    image_size: tuple[int, int]
    num_classes: int
    class_names: tuple[str, ...]
    source_layers: tuple[str, ...]
    scales: tuple[float, ...]
    aspect_ratios: tuple[tuple[float, ...], ...]
    two_boxes_for_ar1: bool = True
    steps: tuple[float | None, ...] | None = None
    offsets: float = 0.5
    clip: bool = False
    variances: tuple[float, float, float, float] = (0.1, 0.1, 0.2, 0.2)
    # Caffe's PriorBox casts min/max sizes to int before use (prior_box_layer.cpp); the released
    # SSD512 weights were trained with that truncation, so Caffe presets keep it.
    integer_anchor_sizes: bool = False
    pixel_mean: tuple[float, float, float] = (123.0, 117.0, 104.0)
    pixel_std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    channel_order: str = "bgr"
    # Which extra feature layers follow the base network, a layout of the backbone: vgg16 has
    # "ssd300" (conv6..conv9, stride-1 conv8_2/conv9_2) and "ssd512" (conv6..conv10, all
    # stride 2). None: the backbone's first layout.
    extra_layers: str | None = None
    resize: str = "stretch"
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        # Normalise sequences (e.g. lists from JSON) to tuples so configs compare and hash.
        object.__setattr__(self, "image_size", tuple(int(v) for v in self.image_size))
        object.__setattr__(self, "class_names", tuple(self.class_names))
        object.__setattr__(self, "source_layers", tuple(self.source_layers))
        object.__setattr__(self, "scales", tuple(float(v) for v in self.scales))
        object.__setattr__(
            self,
            "aspect_ratios",
            tuple(tuple(float(r) for r in layer) for layer in self.aspect_ratios),
        )
        if self.steps is not None:
            object.__setattr__(
                self, "steps", tuple(None if s is None else float(s) for s in self.steps)
            )
        object.__setattr__(self, "variances", tuple(float(v) for v in self.variances))
        object.__setattr__(self, "pixel_mean", tuple(float(v) for v in self.pixel_mean))
        object.__setattr__(self, "pixel_std", tuple(float(v) for v in self.pixel_std))
        self._validate()

    def _validate(self) -> None:
        n_layers = len(self.source_layers)
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if len(self.image_size) != 2 or min(self.image_size) <= 0:
            raise ValueError(f"image_size must be (height, width) > 0, got {self.image_size}")
        if self.num_classes < 2:
            raise ValueError(
                f"num_classes counts background and must be >= 2, got {self.num_classes}"
            )
        if len(self.class_names) != self.num_classes - 1:
            raise ValueError(
                f"class_names must name the {self.num_classes - 1} foreground classes "
                f"(num_classes - 1), got {len(self.class_names)}"
            )
        if len(self.scales) != n_layers + 1:
            raise ValueError(
                f"scales needs {n_layers + 1} values (one per source layer plus one), "
                f"got {len(self.scales)}"
            )
        if len(self.aspect_ratios) != n_layers:
            raise ValueError(
                f"aspect_ratios needs one list per source layer ({n_layers}), "
                f"got {len(self.aspect_ratios)}"
            )
        for k, ratios in enumerate(self.aspect_ratios):
            if not ratios or ratios[0] != 1.0 or any(r <= 0 for r in ratios):
                raise ValueError(
                    f"aspect_ratios[{k}] must start with 1.0 and hold positive values, got {ratios}"
                )
        if self.steps is not None and len(self.steps) != n_layers:
            raise ValueError(f"steps needs {n_layers} values or null, got {len(self.steps)}")
        if len(self.variances) != 4 or any(v <= 0 for v in self.variances):
            raise ValueError(f"variances must be 4 positive values, got {self.variances}")
        if self.channel_order not in CHANNEL_ORDERS:
            raise ValueError(
                f"channel_order must be one of {CHANNEL_ORDERS}, got {self.channel_order!r}"
            )
        if len(self.pixel_mean) != 3 or len(self.pixel_std) != 3 or min(self.pixel_std) <= 0:
            raise ValueError("pixel_mean and pixel_std need 3 values (RGB), std > 0")
        if self.resize not in RESIZE_POLICIES:
            raise ValueError(f"resize must be one of {RESIZE_POLICIES}, got {self.resize!r}")

    # Derived values -------------------------------------------------------------------------

    @property
    def num_layers(self) -> int:
        return len(self.source_layers)

    @property
    def boxes_per_location(self) -> tuple[int, ...]:
        """Anchors per feature-map cell for each predictor layer."""
        extra = 1 if self.two_boxes_for_ar1 else 0
        return tuple(len(ratios) + extra for ratios in self.aspect_ratios)

    @property
    def label_names(self) -> tuple[str, ...]:
        """Names indexed by label, background included: `label_names[0] == "background"`."""
        return ("background", *self.class_names)

    def replace(self, **changes: Any) -> SSDConfig:
        """A copy with some fields changed (validated like a new config)."""
        return dataclasses.replace(self, **changes)

    # Serialisation --------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SSDConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown SSDConfig field(s) {unknown}; known fields: {sorted(known)}")
        missing = sorted(
            f.name
            for f in dataclasses.fields(cls)
            if f.name not in data
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        )
        if missing:
            raise ValueError(f"SSDConfig is missing required field(s) {missing}")
        try:
            return cls(**data)
        except (TypeError, ValueError) as error:
            raise ValueError(f"invalid SSDConfig: {error}") from error

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> SSDConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"SSDConfig JSON is not valid JSON: {error}") from error
        if not isinstance(data, dict):
            raise ValueError(f"SSDConfig JSON must be an object, got {type(data).__name__}")
        return cls.from_dict(data)

    def save(self, path: str | Path) -> None:
        """Write the JSON to `path`, atomically (a crash leaves the old file or the new)."""
        write_text(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> SSDConfig:
        """Read a JSON config; `InputFileError` naming the file if it is missing or invalid."""
        path = require_file(path, "an SSDConfig JSON file")
        try:
            return cls.from_json(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError, TypeError) as error:
            raise InputFileError(path, f"not a valid SSDConfig ({describe(error)})") from error

    @classmethod
    def from_caffe_prototxt(
        cls,
        path: str | Path,
        *,
        name: str | None = None,
        class_names: tuple[str, ...] | list[str] | None = None,
        pixel_mean: tuple[float, float, float] | list[float] | None = None,
    ) -> SSDConfig:
        """The config of a Caffe SSD `deploy.prototxt` (`ssd_core.caffe_prototxt`).

        The `DetectionOutput` settings land in `extra["decoder"]` (`build_model` keyword
        arguments); what the prototxt does not hold (mean, class names, name) comes from the
        recognised family's preset unless given.
        """
        from ssd_core.caffe_prototxt import config_from_prototxt

        return config_from_prototxt(path, name=name, class_names=class_names, pixel_mean=pixel_mean)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> SSDConfig:
        """A named preset (`ssd300_voc`, `ssd300_coco`, `ssd512_voc`, `ssd512_coco`,
        `ssd300_res10_face`, `ssd7`)."""
        from ssd_core.presets import PRESETS

        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; available: {sorted(PRESETS)}")
        return cls.from_dict({**PRESETS[name], **overrides})


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value
