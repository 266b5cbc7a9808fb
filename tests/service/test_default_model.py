"""The embedded trained SSD7 served for real: it finds the objects of rendered shapes scenes.

Runs once `ssd_core/assets/ssd7_shapes.keras` ships (engineer F's trained model); until then it
is skipped with that reason.
"""

from __future__ import annotations

import httpx
import numpy as np
import pytest

import ssd_core
from service.detector import load_detector
from ssd_core.data.shapes import render_scene
from tests.service.conftest import ServiceHarness, encode, make_settings

pytestmark = pytest.mark.skipif(
    not ssd_core.default_model_path().exists(),
    reason="the trained default model ssd_core/assets/ssd7_shapes.keras has not shipped yet",
)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.clip(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0, None).prod()
    union = (a[2:] - a[:2]).prod() + (b[2:] - b[:2]).prod() - inter
    return float(inter / union)


def test_default_model_finds_most_objects_of_rendered_scenes():
    harness = ServiceHarness(make_settings(), loader=lambda: load_detector(None)).start()
    rng = np.random.default_rng(1234)
    found, total = 0, 0
    try:
        for _ in range(12):
            scene = render_scene(rng, empty_probability=0.0)
            response = httpx.post(
                f"{harness.http_url}/detect",
                content=encode(scene.image),
                params={"score_threshold": 0.5},
                headers={"content-type": "image/png"},
                timeout=60,
            )
            assert response.status_code == 200, response.text
            detections = response.json()["detections"]
            for box, label, difficult in zip(
                scene.boxes, scene.labels, scene.difficult, strict=True
            ):
                if difficult:
                    continue
                total += 1
                truth = box.astype(np.float64) - np.array([1, 1, 0, 0])  # VOC 1-based inclusive
                name = ssd_core.SSDConfig.preset("ssd7").label_names[int(label)]
                found += any(
                    d["label"] == name
                    and iou(
                        truth, np.array([d["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")])
                    )
                    >= 0.5
                    for d in detections
                )
    finally:
        harness.stop()
    assert total > 20
    assert found / total >= 0.7, f"found {found} of {total} objects"
