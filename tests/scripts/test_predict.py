"""scripts/predict.py on generated shapes scenes with the shipped shapes model."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import ssd_core
from ssd_core.data.shapes import render_scene
from tests.ssd_core.numpy_boxes import numpy_iou

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "predict.py"
SHAPES_MODEL = Path(ssd_core.__file__).parent / "assets" / "ssd7_shapes.keras"
EXIF_ORIENTATION = 0x0112


def load_script():
    spec = importlib.util.spec_from_file_location("predict_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(argv):
    script = load_script()
    return script.main(script.build_parser().parse_args(argv))


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """A folder with two clear scenes (JPEG, PNG), one EXIF-rotated copy, one corrupt file."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(11)
    made = []
    while len(made) < 2:
        scene = render_scene(rng, 192, 320, max_objects=3, empty_probability=0.0)
        if len(scene.boxes) and not scene.difficult.any() and scene.visible_fraction.min() > 0.9:
            made.append(scene)
    Image.fromarray(made[0].image).save(folder / "a.jpg", quality=95)
    Image.fromarray(made[1].image).save(folder / "b.png")
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6  # display rotated 90 degrees clockwise
    stored = np.ascontiguousarray(np.rot90(made[1].image, 1))
    Image.fromarray(stored).save(folder / "c_rotated.png", exif=exif)
    (folder / "d_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 40)
    (folder / "notes.txt").write_text("not an image")
    return folder, made


def test_folder_run_writes_annotated_images_json_and_csv(scenes, tmp_path):
    folder, made = scenes
    out = tmp_path / "out"
    assert run([str(SHAPES_MODEL), str(folder), "--out", str(out), "--no-progress"]) == 1
    document = json.loads((out / "detections.json").read_text())
    by_name = {Path(r["image"]).name: r for r in document["images"]}
    assert sorted(by_name) == ["a.jpg", "b.png", "c_rotated.png", "d_broken.jpg"]
    assert "error" in by_name["d_broken.jpg"]
    for name, scene in (("a.jpg", made[0]), ("b.png", made[1]), ("c_rotated.png", made[1])):
        result = by_name[name]
        assert (result["height"], result["width"]) == (192, 320)  # upright, original size
        boxes = np.array([[d["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")]
                          for d in result["detections"]]).reshape(-1, 4)  # fmt: skip
        labels = [d["class_id"] for d in result["detections"]]
        for truth, label in zip(scene.boxes, scene.labels, strict=True):  # every object found
            hits = numpy_iou(truth.astype(np.float64), boxes) >= 0.5
            assert any(h and lab == label for h, lab in zip(hits, labels, strict=True)), name
        with Image.open(out / result["annotated"]) as annotated:
            assert annotated.size == (320, 192)
            assert annotated.format == ("JPEG" if name.endswith(".jpg") else "PNG")
    rows = list(csv.DictReader((out / "detections.csv").open()))
    assert len(rows) == sum(len(r.get("detections", ())) for r in document["images"])
    assert {Path(r["image"]).name for r in rows} <= set(by_name)


def test_annotated_image_is_the_input_with_the_boxes_drawn(scenes, tmp_path):
    folder, _ = scenes
    out = tmp_path / "png"
    argv = [str(SHAPES_MODEL), str(folder / "b.png"), "--out", str(out), "--format", "png"]
    assert run([*argv, "--no-progress", "--score-threshold", "0.5"]) == 0
    result = json.loads((out / "detections.json").read_text())["images"][0]
    original = np.asarray(Image.open(folder / "b.png").convert("RGB"))
    annotated = np.asarray(Image.open(out / "b.png").convert("RGB"))
    changed = np.any(original != annotated, axis=-1)
    assert result["detections"] and changed.any()
    for det in result["detections"]:  # each box's left edge is drawn in its class colour
        box = det["box"]
        y = int((box["ymin"] + box["ymax"]) / 2)
        assert changed[y, int(box["xmin"])]
    assert all(d["score"] >= 0.5 for d in result["detections"])


def test_missing_input_is_an_argument_error(tmp_path):
    argv = [str(SHAPES_MODEL), str(tmp_path / "nope.jpg"), "--out", str(tmp_path / "o")]
    assert run(argv) == 2
