"""What is evaluated is what is served: the same image file through `POST /detect` and through
the evaluation path (`ssd_core.evaluation.predict.predict_dataset`, what `scripts/evaluate.py`
runs) gives identical detections, for a JPEG (decoding matters) and an EXIF-rotated PNG."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from PIL import Image

import ssd_core
from service.detector import load_detector
from ssd_core.data.records import ImageRecord
from ssd_core.data.shapes import render_scene
from ssd_core.evaluation.predict import predict_dataset
from ssd_core.inference import Predictor, load_inference_model
from tests.service.conftest import ServiceHarness, make_settings

SHAPES = ssd_core.embedded_models()["shapes"]
EXIF_ORIENTATION = 0x0112


@pytest.fixture(scope="module")
def shapes_service():
    harness = ServiceHarness(make_settings(model_path=SHAPES), loader=lambda: load_detector(SHAPES))
    yield harness.start()
    harness.stop()


def scene_files(folder) -> list:
    """A JPEG scene (odd size, so the resize is not a simple factor) and a rotated PNG."""
    rng = np.random.default_rng(77)
    jpeg = folder / "scene.jpg"
    Image.fromarray(render_scene(rng, 211, 333, empty_probability=0.0).image).save(jpeg, quality=90)
    png = folder / "rotated.png"
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    scene = render_scene(rng, 192, 320, empty_probability=0.0)
    stored = np.ascontiguousarray(np.rot90(scene.image, 1))
    Image.fromarray(stored).save(png, exif=exif)
    return [jpeg, png]


def test_detect_answers_exactly_what_evaluation_measures(shapes_service, tmp_path):
    predictor = Predictor.from_model(load_inference_model(SHAPES))
    decoder = predictor.decoder_config
    files = scene_files(tmp_path)
    records = [ImageRecord(str(p), np.zeros((0, 4)), [], [], image_id=p.name) for p in files]
    evaluated = predict_dataset(predictor, records)
    for path in files:
        response = httpx.post(
            f"{shapes_service.http_url}/detect",
            files={"image": (path.name, path.read_bytes(), "application/octet-stream")},
            params={"score_threshold": decoder.score_threshold,
                    "max_detections": decoder.max_detections},
            timeout=60,
        )  # fmt: skip
        assert response.status_code == 200, response.text
        served = [
            {"image_id": path.name, "label": d["class_id"], "score": d["score"],
             "box": [d["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")]}
            for d in response.json()["detections"]
        ]  # fmt: skip
        expected = [d for d in evaluated if d["image_id"] == path.name]
        assert len(expected) >= 2, "too few detections for a meaningful comparison"
        assert served == expected
    rotated = Image.open(io.BytesIO(files[1].read_bytes()))
    assert rotated.size == (192, 320)  # stored sideways; both paths saw it upright (320 x 192)
