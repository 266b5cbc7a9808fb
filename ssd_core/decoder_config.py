"""`DecoderConfig`: how an SSD turns its raw outputs into detections. It travels with the
model (`SSD.get_config`), like the `SSDConfig`, so a saved `.keras`, an export and the service
agree on the thresholds and the number of detections kept.

The score rule, for the in-graph decoder and every later filter (the service's per-request
threshold, the evaluation gallery): a detection needs a score strictly **above** the
threshold (`passes_score_threshold`; Caffe `DetectionOutput`'s `confidence_threshold` rule),
and a score threshold is valid in [0, 1) (`check_score_threshold`): 1 would keep nothing.
NMS suppresses a box whose IoU with a kept, higher-ranked box is strictly above
`iou_threshold`, valid in [0, 1].
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

METHODS = ("caffe", "fast")
# The valid range of a score threshold, [SCORE_THRESHOLD_MIN, SCORE_THRESHOLD_BELOW).
SCORE_THRESHOLD_MIN = 0.0
SCORE_THRESHOLD_BELOW = 1.0
# The old `SSD(...)` / `build_model(...)` keyword for `method` (models saved before the
# DecoderConfig existed carry it).
LEGACY_METHOD_KEY = "decoder"


def check_score_threshold(value: float, name: str = "score_threshold") -> float:
    """`value` as a float if it is a valid score threshold, in [0, 1); else ValueError."""
    value = float(value)
    if not SCORE_THRESHOLD_MIN <= value < SCORE_THRESHOLD_BELOW:
        raise ValueError(
            f"{name} must be in [{SCORE_THRESHOLD_MIN:g}, {SCORE_THRESHOLD_BELOW:g}), got {value}"
        )
    return value


def passes_score_threshold(scores: Any, threshold: Any) -> Any:
    """The one score rule: `scores > threshold`, elementwise on a NumPy array or a tensor
    (bool array / tensor of the same shape); `threshold` a float, a NumPy scalar or a scalar
    tensor."""
    return scores > threshold


@dataclass(frozen=True)
class DecoderConfig:
    """Decoder settings; the defaults are the released Caffe SSD models' (`ssd_pascal.py`).

    Attributes:
        method: `"caffe"` (softmax, per-class top-k and NMS: Caffe `DetectionOutput`) or
            `"fast"` (each anchor's best class, one class-agnostic NMS).
        score_threshold: candidates need a score above this, in [0, 1).
        iou_threshold: NMS suppresses IoU above this, in [0, 1].
        top_k: candidates per class ("caffe") or per image ("fast") entering NMS, >= 1.
        max_detections: K, detections kept per image over all classes, >= 1.
        clip: clip decoded boxes to the image before NMS (Caffe does not: `clip=False`).
    """

    method: str = "caffe"
    score_threshold: float = 0.01
    iou_threshold: float = 0.45
    top_k: int = 400
    max_detections: int = 200
    clip: bool = True

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        object.__setattr__(self, "score_threshold", check_score_threshold(self.score_threshold))
        if not 0.0 <= float(self.iou_threshold) <= 1.0:
            raise ValueError(f"iou_threshold must be in [0, 1], got {self.iou_threshold}")
        object.__setattr__(self, "iou_threshold", float(self.iou_threshold))
        for name in ("top_k", "max_detections"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
            object.__setattr__(self, name, int(value))
        if not isinstance(self.clip, bool):
            raise ValueError(f"clip must be true or false, got {self.clip!r}")

    def check_honours(
        self, score_threshold: float | None = None, max_detections: int | None = None
    ) -> None:
        """Raise ValueError, naming the limit, unless this decoder's output can honour a later
        filter: it returns no scores at or below its own threshold (compared in float32, the
        precision of the scores) and at most `max_detections` per image. None: not asked."""
        if score_threshold is not None:
            check_score_threshold(score_threshold)
            if np.float32(score_threshold) < np.float32(self.score_threshold):
                raise ValueError(
                    f"score_threshold must be >= {self.score_threshold:g}, the threshold of the "
                    "model's decoder (it returns no scores at or below it), "
                    f"got {score_threshold:g}"
                )
        if max_detections is not None and not 1 <= max_detections <= self.max_detections:
            raise ValueError(
                f"max_detections must be in 1..{self.max_detections} (the model's decoder keeps "
                f"at most {self.max_detections} per image), got {max_detections}"
            )

    def replace(self, **changes: Any) -> DecoderConfig:
        """A copy with some fields changed (validated like a new config)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DecoderConfig:
        """The config of `data`; unset fields take the defaults.

        Also reads the keyword form models were saved with before this class existed
        (`{"decoder": "caffe", "score_threshold": ...}`).

        Raises:
            ValueError: an unknown key or an invalid value.
        """
        data = dict(data)
        if LEGACY_METHOD_KEY in data:
            data.setdefault("method", data.pop(LEGACY_METHOD_KEY))
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown DecoderConfig field(s) {unknown}; known: {sorted(known)}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> DecoderConfig:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"DecoderConfig JSON must be an object, got {type(data).__name__}")
        return cls.from_dict(data)
