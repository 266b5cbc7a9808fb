"""Quantise a model file's network to int8 for each engine, then guard the accuracy it keeps:
what `scripts/export.py --quantize int8 --calibration SPEC --guard SPEC` runs.

The guard runs the fp32 and the int8 network of the same engine on the same images, through the
service's inference path (a `Predictor` over each engine), and reports both criteria of README
"int8":

- on an annotated dataset, Pascal VOC07 mAP (IoU 0.5): int8 may lose at most `max_map_drop`
  (0.01) against fp32 - the criterion there;
- the detection agreement (`accuracy.compare_detections`: IoU >= 0.9, score within 0.05, above
  the score threshold) - the criterion on a dataset without annotations (`images:DIR`), e.g. the
  face detector's photos.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ssd_core.data import DetectionDataset, load_dataset
from ssd_core.engines.accuracy import Agreement, compare_detections, voc07_map
from ssd_core.engines.cache import ArtifactCache
from ssd_core.engines.calibration import calibration_images
from ssd_core.engines.quantize import quantize
from ssd_core.engines.registry import create_engine
from ssd_core.evaluation.predict import predict_records
from ssd_core.inference import Predictor, as_inference
from ssd_core.model import SSD


class QuantizationGuardError(Exception):
    """int8 lost more accuracy than allowed; `reports` holds one line per step and engine."""

    def __init__(self, reports: list[str]) -> None:
        super().__init__("; ".join(reports))
        self.reports = reports


@dataclass(frozen=True)
class GuardResult:
    """One engine's int8 against its fp32 on the guard images (mAP None without annotations)."""

    engine: str
    images: int
    agreement: Agreement
    map_fp32: float | None
    map_int8: float | None
    max_map_drop: float

    @property
    def passed(self) -> bool:
        if self.map_fp32 is not None and self.map_int8 is not None:
            return self.map_int8 >= self.map_fp32 - self.max_map_drop
        return self.agreement.same

    def line(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        scores = ""
        if self.map_fp32 is not None and self.map_int8 is not None:
            scores = (
                f"VOC07 mAP fp32 {self.map_fp32:.4f}, int8 {self.map_int8:.4f} "
                f"(allowed drop {self.max_map_drop}); "
            )
        return (
            f"{self.engine} int8 guard {verdict} on {self.images} images: {scores}"
            f"{self.agreement.summary()}"
        )


def quantize_and_guard(
    model: SSD,
    model_path: str | Path,
    engines: Sequence[str],
    calibration: tuple[str, str, int],
    guard: tuple[str, str] | None = None,
    max_map_drop: float = 0.01,
    score_threshold: float = 0.3,
) -> list[str]:
    """Write each engine's int8 network into the model file's engine cache, then guard it.

    Args:
        model: the SSD loaded from `model_path` (either mode).
        model_path: its `.keras` file (the cache key; int8 networks go beside it).
        engines: of `quantize.QUANTIZED_ENGINES`.
        calibration: (dataset spec, split, at most this many images).
        guard: (dataset spec, split) to compare int8 with fp32 on, or None.
        max_map_drop: allowed VOC07 mAP loss on an annotated guard dataset.
        score_threshold: detections compared by the agreement check score at least this.

    Returns:
        One report line per quantised network and per guard result.

    Raises:
        QuantizationGuardError: a guard did not pass (the report lines are attached).
    """
    inference = as_inference(model)
    spec, split, count = calibration
    images, description = calibration_images(spec, split, inference.ssd_config, count)
    cache = ArtifactCache(inference, model_path)
    reports = []
    for engine in engines:
        path = quantize(inference, cache, engine, images, description)
        reports.append(f"{engine} int8 network ({len(images)} calibration images): {path}")
    if guard is None:
        return reports
    dataset = load_dataset(guard[0], guard[1], inference.ssd_config.class_names)
    results = [
        guard_engine(inference, model_path, engine, dataset, max_map_drop, score_threshold)
        for engine in engines
    ]
    reports += [result.line() for result in results]
    if not all(result.passed for result in results):
        raise QuantizationGuardError(reports)
    return reports


def guard_engine(
    model: SSD,
    model_path: str | Path,
    engine: str,
    dataset: DetectionDataset,
    max_map_drop: float = 0.01,
    score_threshold: float = 0.3,
    batch_size: int = 8,
) -> GuardResult:
    """`engine`'s int8 network against its fp32 network on every image of `dataset`."""
    records = dataset.records
    found = {
        precision: predict_records(
            Predictor(create_engine(model, engine, precision, model_path=model_path)),
            records,
            batch_size,
        )
        for precision in ("fp32", "int8")
    }
    annotated = any(record.num_objects for record in records)
    return GuardResult(
        engine=engine,
        images=len(dataset),
        agreement=compare_detections(found["fp32"], found["int8"], score_threshold),
        map_fp32=voc07_map(found["fp32"], dataset) if annotated else None,
        map_int8=voc07_map(found["int8"], dataset) if annotated else None,
        max_map_drop=max_map_drop,
    )
