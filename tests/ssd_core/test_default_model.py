"""The shipped SSD7 shapes model (embedded name "shapes"; the default model is the face
detector, tests/ssd_core/test_face_asset.py) finds clear shapes in freshly generated scenes
(not its training set: a seed the training and test splits never use)."""

from __future__ import annotations

import numpy as np
import pytest

import ssd_core
from ssd_core.data.shapes import render_scene
from ssd_core.inference import Predictor, load_inference_model
from tests.ssd_core.numpy_boxes import numpy_iou

FRESH_SEED = 20_261_124  # the training data used seed 0 (train and test splits)
NUM_SCENES = 40
MIN_SIDE_PX = 24  # "clear": unoccluded, not cut by the border, not tiny
# The service's default score threshold. Measured on these scenes with the shipped model:
# recall 56/56, precision 82/86; at 0.5: 55/56 and 75/75.
SCORE_THRESHOLD = 0.3


@pytest.fixture(scope="module")
def model():
    path = ssd_core.embedded_models()["shapes"]
    assert path.exists(), f"the shapes model is missing at {path}"
    return load_inference_model(path)


@pytest.fixture(scope="module")
def predictor(model):
    return Predictor.from_model(model)


def detect(predictor, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel boxes, labels and scores above SCORE_THRESHOLD for one RGB uint8 image, through
    the service's inference path."""
    [found] = predictor.predict([image])
    found = found.filter(score_threshold=SCORE_THRESHOLD)
    return found.boxes, found.labels, found.scores


def clear_objects(scene) -> list[tuple[np.ndarray, int]]:
    boxes = scene.boxes.copy()
    boxes[:, :2] -= 1.0  # VOC 1-based inclusive -> 0-based continuous pixels
    sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    clear = (
        (scene.visible_fraction >= 0.999) & ~scene.truncated & ~scene.difficult
        & (sides >= MIN_SIDE_PX)
    )  # fmt: skip
    return [(boxes[i], int(scene.labels[i])) for i in np.flatnonzero(clear)]


def test_shapes_model_is_an_ssd7_for_the_shapes_classes(model) -> None:
    assert model.ssd_config.backbone == "ssd7"
    assert model.ssd_config.class_names == ssd_core.presets.SHAPES_CLASSES


def test_shapes_model_finds_clear_shapes_in_fresh_scenes(predictor) -> None:
    found, total, correct_detections, detections = 0, 0, 0, 0
    for index in range(NUM_SCENES):
        scene = render_scene(np.random.default_rng([FRESH_SEED, index]), 192, 320)
        boxes, labels, _ = detect(predictor, scene.image)
        detections += len(boxes)
        objects = clear_objects(scene)
        total += len(objects)
        for box, label in objects:
            same_class = boxes[labels == label]
            found += bool(same_class.size and numpy_iou(box, same_class).max() > 0.5)
        all_boxes = scene.boxes.copy()
        all_boxes[:, :2] -= 1.0
        for box, label in zip(boxes, labels, strict=True):
            same = all_boxes[scene.labels == label]
            correct_detections += bool(same.size and numpy_iou(box, same).max() > 0.5)
    assert total >= 15, "too few clear objects to judge; change FRESH_SEED"
    assert found / total >= 0.9, f"found {found} of {total} clear objects"
    assert correct_detections / max(detections, 1) >= 0.85, (correct_detections, detections)
