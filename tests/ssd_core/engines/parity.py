"""Compare an engine's padded outputs with the TF reference's, detection by detection.

The tolerances are the issue's: scores to 1e-4, boxes to 1e-3 (normalised coordinates), same
class. Detections whose reference score lies within the score tolerance of the decoder's
threshold may legitimately appear in one output and not the other, so they are not required
to match; every other detection must have its counterpart, in both directions.
"""

from __future__ import annotations

import numpy as np

SCORE_TOLERANCE = 1e-4
BOX_TOLERANCE = 1e-3


def detections(outputs: dict[str, np.ndarray], image: int) -> list[tuple[int, float, np.ndarray]]:
    """(class, score, box) of one image's valid rows."""
    n = int(outputs["num_detections"][image])
    return [
        (
            int(outputs["labels"][image, i]),
            float(outputs["scores"][image, i]),
            outputs["boxes"][image, i].astype(np.float64),
        )
        for i in range(n)
    ]


def unmatched(
    wanted: list[tuple[int, float, np.ndarray]],
    found: list[tuple[int, float, np.ndarray]],
    threshold: float,
    score_tolerance: float,
    box_tolerance: float,
) -> list[tuple[int, float, np.ndarray]]:
    """Detections of `wanted` (above threshold + tolerance) with no counterpart in `found`."""
    missing = []
    used = [False] * len(found)
    for label, score, box in wanted:
        if score <= threshold + score_tolerance:
            continue
        for j, (other_label, other_score, other_box) in enumerate(found):
            if (
                not used[j]
                and other_label == label
                and abs(other_score - score) <= score_tolerance
                and np.abs(other_box - box).max() <= box_tolerance
            ):
                used[j] = True
                break
        else:
            missing.append((label, score, box))
    return missing


def assert_same_detections(
    reference: dict[str, np.ndarray],
    outputs: dict[str, np.ndarray],
    threshold: float,
    score_tolerance: float = SCORE_TOLERANCE,
    box_tolerance: float = BOX_TOLERANCE,
) -> None:
    """Every image's detections above `threshold` match within the tolerances, both ways."""
    assert outputs["boxes"].shape == reference["boxes"].shape
    for image in range(len(reference["num_detections"])):
        ref, out = detections(reference, image), detections(outputs, image)
        missing = unmatched(ref, out, threshold, score_tolerance, box_tolerance)
        extra = unmatched(out, ref, threshold, score_tolerance, box_tolerance)
        assert not missing and not extra, (
            f"image {image}: {len(missing)} reference detections not found, {len(extra)} "
            f"detections not in the reference; first missing {missing[:2]}, extra {extra[:2]}"
        )


def assert_identical_outputs(
    reference: dict[str, np.ndarray], outputs: dict[str, np.ndarray], tolerance: float
) -> None:
    """The padded outputs row by row: the same keys, shapes, dtypes, counts and labels, and
    scores and boxes within `tolerance` (two implementations of one decoder, not two engines)."""
    assert set(outputs) == set(reference)
    for key, value in reference.items():
        assert outputs[key].shape == value.shape and outputs[key].dtype == value.dtype, key
    np.testing.assert_array_equal(outputs["num_detections"], reference["num_detections"])
    np.testing.assert_array_equal(outputs["labels"], reference["labels"])
    np.testing.assert_allclose(outputs["scores"], reference["scores"], rtol=0, atol=tolerance)
    np.testing.assert_allclose(outputs["boxes"], reference["boxes"], rtol=0, atol=tolerance)
