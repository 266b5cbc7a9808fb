"""The service on every installed engine (`SSD_ENGINE`, `SSD_PRECISION`): the same detections
as the TF reference over `/detect`, the engine reported by `/model`, the request's limits
reaching the in-graph decoder, and unusable engine settings refused at start-up in one line."""

from __future__ import annotations

import shutil

import httpx
import numpy as np
import pytest
from PIL import Image

import ssd_core
from service.batcher import BatchLimits
from service.detector import EngineSetting, load_detector
from service.settings import SettingsError, load_settings, per_model_choice
from ssd_core.data.shapes import render_scene
from ssd_core.engines import ENGINES, registry
from tests.service.conftest import ServiceHarness, encode, make_settings, rectangle_image
from tests.service.test_startup import assert_one_line_error, run_service
from tests.ssd_core.engines.parity import SCORE_TOLERANCE, unmatched

SHAPES = ssd_core.embedded_models()["shapes"]


@pytest.fixture(scope="module")
def shapes_copy(tmp_path_factory):
    """The shipped shapes model in a folder of its own (the engine cache goes beside it)."""
    path = tmp_path_factory.mktemp("model") / "shapes.keras"
    shutil.copy(SHAPES, path)
    return path


@pytest.fixture(scope="module")
def scene_jpeg(tmp_path_factory) -> bytes:
    scene = render_scene(np.random.default_rng(5), 256, 416, empty_probability=0.0)
    path = tmp_path_factory.mktemp("scene") / "scene.jpg"
    Image.fromarray(scene.image).save(path, quality=90)
    return path.read_bytes()


def served(harness: ServiceHarness, image: bytes, **params) -> dict:
    response = httpx.post(
        f"{harness.http_url}/detect",
        content=image,
        headers={"content-type": "image/jpeg"},
        params=params,
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return response.json()


def as_rows(answer: dict) -> list[tuple[int, float, np.ndarray]]:
    """(class, score, box normalised by the image size) of every detection."""
    size = np.array([answer["width"], answer["height"]] * 2, np.float64)
    corners = ("xmin", "ymin", "xmax", "ymax")
    return [
        (d["class_id"], d["score"], np.array([d["box"][k] for k in corners]) / size)
        for d in answer["detections"]
    ]


@pytest.mark.parametrize("engine", [e for e in ENGINES if e != "tf"])
def test_service_on_engine_answers_with_the_tf_reference_detections(
    engine, shapes_copy, scene_jpeg
):
    if registry.missing_packages(engine):
        pytest.skip(f"{engine} needs {registry.missing_packages(engine)} (extra not installed)")
    answers = {}
    for name in ("tf", engine):
        harness = ServiceHarness(
            make_settings(model_path=shapes_copy),
            loader=lambda name=name: load_detector(shapes_copy, engine=EngineSetting(name)),
        ).start()
        try:
            model = httpx.get(f"{harness.http_url}/model", timeout=10).json()
            assert (model["engine"]["name"], model["engine"]["precision"]) == (name, "fp32")
            answers[name] = [
                served(harness, scene_jpeg, score_threshold=threshold)
                for threshold in (0.01, 0.3)  # the decoder's floor; the service default
            ]
        finally:
            harness.stop()
    pairs = zip((0.01, 0.3), answers["tf"], answers[engine], strict=True)
    for threshold, reference, answer in pairs:
        expected, found = as_rows(reference), as_rows(answer)
        assert len(expected) >= 2, "too few detections for a meaningful comparison"
        # Scores to 1e-4, boxes to 1e-3 of the image size, same class, both ways.
        assert not unmatched(expected, found, threshold, SCORE_TOLERANCE, 1e-3)
        assert not unmatched(found, expected, threshold, SCORE_TOLERANCE, 1e-3)


def test_request_limits_reach_the_batch(gated_service, gated_detector):
    harness = gated_service()
    image = encode(rectangle_image((10, 10, 60, 50)), "PNG")
    for params in ({"score_threshold": 0.5, "max_detections": 7}, {}):
        response = httpx.post(
            f"{harness.http_url}/detect",
            content=image,
            headers={"content-type": "image/png"},
            params=params,
            timeout=30,
        )
        assert response.status_code == 200, response.text
    # The defaults: SSD_SCORE_THRESHOLD 0.3, SSD_MAX_DETECTIONS 100 (within the oracle's 150).
    assert gated_detector.limits == [BatchLimits(0.5, 7), BatchLimits(0.3, 100)]


def test_model_reports_the_engine(service):
    engine = httpx.get(f"{service.http_url}/model", timeout=10).json()["engine"]
    assert (engine["name"], engine["precision"]) == ("tf", "fp32")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("auto", {None: "auto"}),
        ("openvino, shapes=tf", {None: "openvino", "shapes": "tf"}),
        ("face=int8", {None: "auto", "face": "int8"}),
    ],
)
def test_per_model_choice_reads_a_default_and_overrides(value, expected):
    assert per_model_choice(value) == expected


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SSD_ENGINE": "tensorrt"}, "engine must be one of auto, tf, tf-xla"),
        ({"SSD_ENGINE": "tf,face="}, "expected 'VALUE' or 'VALUE,MODEL=VALUE,...'"),
        ({"SSD_ENGINE": "tf,tf"}, "the value of every other model is given twice"),
        ({"SSD_PRECISION": "int4"}, "precision must be one of auto, fp32"),
        ({"SSD_ENGINE": "tf", "SSD_PRECISION": "int8"}, "engine 'tf' runs precisions"),
        ({"SSD_ENGINE": "tf,shapes=onnxruntime", "SSD_PRECISION": "bf16"}, "(model shapes)"),
    ],
)
def test_unusable_engine_setting_is_one_line(monkeypatch, env, message):
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    [line] = raised.value.lines
    assert message in line, line


def test_an_engine_whose_extra_is_missing_is_refused_naming_the_extra(monkeypatch):
    real = registry.missing_packages
    monkeypatch.setattr(
        registry,
        "missing_packages",
        lambda engine: ["openvino"] if engine == "openvino" else real(engine),
    )
    monkeypatch.setenv("SSD_ENGINE", "openvino")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    [line] = raised.value.lines
    assert "needs openvino, not installed: pip install -e '.[openvino]'" in line


def test_int8_without_its_network_stops_start_up_saying_how_to_make_it(shapes_copy, tmp_path):
    if registry.missing_packages("openvino"):
        pytest.skip("openvino extra not installed")
    model = tmp_path / "shapes.keras"
    shutil.copy(shapes_copy, model)
    result = run_service(
        {
            "SSD_MODEL_PATH": str(model),
            "SSD_ENGINE": "openvino",
            "SSD_PRECISION": "int8",
            "SSD_HTTP_PORT": "0",
            "SSD_GRPC_PORT": "0",
        },
        timeout_s=120,
    )
    assert_one_line_error(result, f"SSD_MODEL_PATH={model}", "--quantize int8")
