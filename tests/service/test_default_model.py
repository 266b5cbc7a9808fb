"""The embedded models served for real: the default face detector on real photos (against
OpenCV 4's cv2.dnn on the same photo), and the SSD7 shapes model (`SSD_MODEL_PATH`) on
rendered shapes scenes."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

import ssd_core
from service.detector import load_detector
from ssd_core.data.shapes import render_scene
from tests.reference.face_files import photo_path, read_photo_rgb
from tests.reference.opencv_face import opencv_face_net, run_opencv
from tests.service.conftest import ServiceHarness, encode, make_settings


def iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.clip(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0, None).prod()
    union = (a[2:] - a[:2]).prod() + (b[2:] - b[:2]).prod() - inter
    return float(inter / union)


def test_shapes_model_finds_most_objects_of_rendered_scenes():
    shapes = ssd_core.embedded_models()["shapes"]
    harness = ServiceHarness(
        make_settings(model_path=shapes), loader=lambda: load_detector(shapes)
    ).start()
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


@pytest.fixture(scope="module")
def default_service():
    settings = make_settings()
    assert settings.model_path is None  # the embedded default model
    harness = ServiceHarness(
        settings, loader=lambda: load_detector(ssd_core.default_model_path())
    ).start()
    yield harness
    harness.stop()


def _detect_photo(harness: ServiceHarness, name: str) -> dict:
    response = httpx.post(
        f"{harness.http_url}/detect",
        files={"image": (name, photo_path(name).read_bytes(), "image/png")},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_default_service_finds_the_astronauts_face_where_opencv_does(default_service):
    body = _detect_photo(default_service, "astronaut.png")
    assert (body["model_name"], body["width"], body["height"]) == ("ssd300_res10_face", 512, 512)
    [face] = body["detections"]
    reference = run_opencv(opencv_face_net(), read_photo_rgb("astronaut.png")).detections[0]
    expected = reference[3:] * 512  # normalised -> pixels of the 512x512 photo
    got = np.array([face["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")])
    assert face["label"] == "face" and face["class_id"] == 1
    np.testing.assert_allclose(got, expected, atol=2.0)
    assert face["score"] == pytest.approx(float(reference[2]), abs=1e-3)


def test_default_service_finds_no_face_in_the_coffee_photo(default_service):
    assert _detect_photo(default_service, "coffee.png")["detections"] == []
