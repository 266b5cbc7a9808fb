"""scripts/evaluate.py end to end on a small generated shapes dataset."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from PIL import Image

from ssd_core.data import parse_voc
from ssd_core.data.shapes import write_shapes_dataset
from ssd_core.presets import SHAPES_CLASSES
from tests.browser import ARTIFACTS, watch_console

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "evaluate.py"


def load_script():
    spec = importlib.util.spec_from_file_location("evaluate_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory):
    # Images larger than the model input, so boxes must be scaled back to these pixels.
    root = tmp_path_factory.mktemp("shapes")
    return write_shapes_dataset(root, num_train=0, num_test=4, seed=3, height=120, width=200)


def run(argv):
    script = load_script()
    return script.main(script.build_parser().parse_args(argv))


def write_ground_truth_as_detections(root: Path, path: Path, score: float) -> None:
    """Write every object of the `test` split of `root` as a detection JSON file at `path`,
    each with confidence `score` (pixel boxes, so a perfect detector's output)."""
    truth = parse_voc(root, "test")
    dets = [
        {"image_id": r.image_id, "label": int(label), "score": score, "box": box.tolist()}
        for r in truth
        for box, label in zip(r.boxes, r.labels, strict=True)
    ]
    path.write_text(json.dumps(dets))


def test_perfect_detections_file_scores_map_one(shapes_root, tmp_path):
    write_ground_truth_as_detections(shapes_root, tmp_path / "dets.json", score=1.0)
    out = tmp_path / "out"
    argv = ["--detections", str(tmp_path / "dets.json"), "--dataset", f"voc:{shapes_root}"]
    assert run([*argv, "--split", "test", "--metric", "voc07", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["mAP"] == pytest.approx(1.0)
    assert set(results["ap"]) == set(SHAPES_CLASSES)


def test_model_run_writes_results_curves_and_server_files(shapes_root, tmp_path):
    import ssd_core
    from ssd_core.config import SSDConfig

    model = ssd_core.build_model(SSDConfig.preset("ssd7", image_size=(96, 160)), "inference")
    model.save(tmp_path / "ssd7.keras")
    out = tmp_path / "eval"
    argv = ["--model", str(tmp_path / "ssd7.keras"), "--dataset", f"voc:{shapes_root}"]
    argv += ["--split", "test", "--metric", "voc2010", "--out", str(out), "--batch-size", "3"]
    assert run([*argv, "--no-progress"]) == 0

    results = json.loads((out / "results.json").read_text())
    assert "mAP" in results and set(results["ap"]) == set(SHAPES_CLASSES)
    assert results["num_images"] == 4
    for name in SHAPES_CLASSES:
        assert (out / f"comp4_det_test_{name}.txt").is_file()
        assert (out / f"pr_{name}.png").stat().st_size > 0
    assert (out / "pr_summary.png").stat().st_size > 0
    assert (out / "index.html").is_file() and (out / "gallery").is_dir()
    dets = json.loads((out / "detections.json").read_text())
    assert len(dets) == results["num_detections"] > 0  # random weights still fire at 0.01
    assert {d["image_id"] for d in dets} <= {f"test_{i:06d}" for i in range(4)}
    assert all(0 <= d["box"][0] <= d["box"][2] <= 200 and 0 <= d["box"][3] <= 120 for d in dets)
    lines = sum(
        len((out / f"comp4_det_test_{n}.txt").read_text().splitlines()) for n in SHAPES_CLASSES
    )
    assert lines == len(dets)


def test_coco_metric_reports_coco_stats(shapes_root, tmp_path):
    write_ground_truth_as_detections(shapes_root, tmp_path / "dets.json", score=0.9)
    out = tmp_path / "coco"
    argv = ["--detections", str(tmp_path / "dets.json"), "--dataset", f"voc:{shapes_root}"]
    assert run([*argv, "--metric", "coco", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["metric"] == "coco"
    assert results["AP50"] == pytest.approx(1.0)
    assert results["mAP"] == pytest.approx(1.0)


def test_gallery_ranks_images_by_errors_and_index_opens_in_a_browser(shapes_root, tmp_path,
                                                                     chromium):  # fmt: skip
    # Perfect detections except: test_000001 loses its first object (1 miss); test_000002
    # gets two boxes of a class where there is nothing (2 false positives).
    write_ground_truth_as_detections(shapes_root, tmp_path / "dets.json", score=0.9)
    dets = json.loads((tmp_path / "dets.json").read_text())
    truth = {r.image_id: r for r in parse_voc(shapes_root, "test")}
    assert len(truth["test_000001"].boxes) >= 1
    first_of_1 = next(i for i, d in enumerate(dets) if d["image_id"] == "test_000001")
    del dets[first_of_1]
    fps = [{"image_id": "test_000002", "label": 1, "score": s, "box": [0, 0, 3, 3]}
           for s in (0.8, 0.7)]  # fmt: skip
    (tmp_path / "dets.json").write_text(json.dumps(dets + fps))
    out = tmp_path / "report"
    argv = ["--detections", str(tmp_path / "dets.json"), "--dataset", f"voc:{shapes_root}"]
    assert run([*argv, "--out", str(out), "--gallery", "5"]) == 0

    gallery = sorted((out / "gallery").iterdir())
    assert [p.name for p in gallery] == ["000_test_000002.jpg", "001_test_000001.jpg"]
    for path in gallery:
        with Image.open(path) as image:
            assert image.size == (200, 120)  # the dataset's stored size
    page, sources = open_report(chromium, out / "index.html")
    assert sources[0] == "pr_summary.png" and sources[-2:] == [f"gallery/{p.name}" for p in gallery]
    rows = page.eval_on_selector_all("tbody tr", "rows => rows.map(r => r.cells[0].textContent)")
    assert rows == [*SHAPES_CLASSES, "mAP"]
    captions = page.eval_on_selector_all("figcaption", "cs => cs.map(c => c.textContent)")
    assert captions == [
        f"test_000002: 2 false positive(s), 0 miss(es), {len(truth['test_000002'].boxes)} correct",
        "test_000001: 0 false positive(s), 1 miss(es), "
        f"{len(truth['test_000001'].boxes) - 1} correct",
    ]
    page.close()


def open_report(chromium, index: Path):
    """Open `index` in headless Chromium; assert every image loads and nothing goes wrong.

    Returns the page and its image sources in document order."""
    page = chromium.new_page()
    errors = watch_console(page)
    page.goto(index.as_uri())
    page.wait_for_load_state("load")
    images = page.eval_on_selector_all(
        "img", "imgs => imgs.map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0])"
    )
    assert images and all(loaded for _, loaded in images), images
    assert errors == []
    page.screenshot(path=ARTIFACTS / f"evaluation_{index.parent.name}.png", full_page=True)
    return page, [src for src, _ in images]


def test_quick_run_reports_the_shipped_model_with_gallery_and_index(tmp_path, chromium):
    out = tmp_path / "quick"
    assert run(["--quick", "--out", str(out), "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["num_images"] == 12
    assert results["mAP"] > 0.7  # the shipped model scores ~0.9 on fresh scenes (README)
    gallery = sorted((out / "gallery").iterdir())
    assert 1 <= len(gallery) <= 12
    page, sources = open_report(chromium, out / "index.html")
    assert sources[-len(gallery) :] == [f"gallery/{p.name}" for p in gallery]
    page.close()


def test_dataset_is_required_without_quick(tmp_path):
    assert run(["--model", "m.keras", "--out", str(tmp_path)]) == 2


def test_quick_run_in_an_engine_reports_it_and_a_close_map(tmp_path):
    # The engine path reads and stretches uint8 images as the service does; the Keras path
    # resizes floats in tf.data: the same model, so nearly the same mAP on the quick scenes.
    assert run(["--quick", "--out", str(tmp_path / "keras"), "--gallery", "0"]) == 0
    argv = ["--quick", "--out", str(tmp_path / "tf"), "--gallery", "0", "--engine", "tf"]
    assert run(argv) == 0
    keras_result = json.loads((tmp_path / "keras" / "results.json").read_text())
    engine_result = json.loads((tmp_path / "tf" / "results.json").read_text())
    assert engine_result["engine"] == "tf" and engine_result["precision"] == "auto"
    assert engine_result["mAP"] == pytest.approx(keras_result["mAP"], abs=0.03)
