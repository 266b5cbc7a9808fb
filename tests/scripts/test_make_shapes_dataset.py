"""scripts/make_shapes_dataset.py writes a loadable, deterministic VOC-layout dataset."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ssd_core.data import load_dataset
from ssd_core.presets import SHAPES_CLASSES

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_shapes_dataset.py"


def load_script():
    spec = importlib.util.spec_from_file_location("make_shapes_dataset", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(out: Path, seed: int) -> None:
    script = load_script()
    argv = ["--out", str(out), "--train", "3", "--test", "2", "--seed", str(seed)]
    argv += ["--height", "64", "--width", "96"]
    assert script.main(script.build_parser().parse_args(argv)) == 0


def test_writes_voc_layout_with_requested_counts(tmp_path):
    run(tmp_path / "d", seed=1)
    train = load_dataset(f"voc:{tmp_path / 'd'}", "train")
    test = load_dataset(f"voc:{tmp_path / 'd'}", "test")
    assert (len(train), len(test)) == (3, 2)
    assert train.class_names == SHAPES_CLASSES
    assert all(Path(r.image_path).is_file() for r in (*train, *test))
    assert all((r.width, r.height) == (96, 64) for r in train)


def test_same_seed_writes_identical_annotations(tmp_path):
    run(tmp_path / "a", seed=4)
    run(tmp_path / "b", seed=4)
    for name in ("train_000002.xml", "test_000001.xml"):
        a = (tmp_path / "a" / "Annotations" / name).read_text()
        assert a == (tmp_path / "b" / "Annotations" / name).read_text()
    image = "JPEGImages/train_000000.jpg"
    assert (tmp_path / "a" / image).read_bytes() == (tmp_path / "b" / image).read_bytes()
