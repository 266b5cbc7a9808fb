"""The synthetic shapes scenes: determinism, annotations that match the drawn pixels."""

from __future__ import annotations

import numpy as np
import pytest

from ssd_core.data import parse_voc
from ssd_core.data.shapes import render_scene, shape_mask, write_shapes_dataset
from ssd_core.presets import SHAPES_CLASSES

H, W = 120, 192


def scenes(count: int, seed: int = 0):
    return [render_scene(np.random.default_rng([seed, i]), H, W) for i in range(count)]


def isolated(boxes: np.ndarray, i: int, margin: int = 2) -> bool:
    """No other box comes within `margin` pixels of box i."""
    others = np.delete(boxes, i, axis=0)
    b = boxes[i]
    near = (
        (others[:, 0] <= b[2] + margin)
        & (others[:, 2] >= b[0] - margin)
        & (others[:, 1] <= b[3] + margin)
        & (others[:, 3] >= b[1] - margin)
    )
    return not near.any()


def drawn_pixels_near(scene, box: np.ndarray, margin: int = 2) -> np.ndarray:
    """Bool (H, W): pixels within `margin` of the box that differ from the empty background."""
    changed = np.any(scene.image != scene.background, axis=2)
    region = np.zeros_like(changed)
    x0, y0, x1, y1 = (int(v) - 1 for v in box)  # VOC 1-based -> 0-based indices
    region[max(y0 - margin, 0) : y1 + margin + 1, max(x0 - margin, 0) : x1 + margin + 1] = True
    return changed & region


def test_same_seed_gives_identical_scene():
    a = render_scene(np.random.default_rng([7, 3]), H, W)
    b = render_scene(np.random.default_rng([7, 3]), H, W)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.difficult, b.difficult)


def test_different_seeds_give_different_scenes():
    a = render_scene(np.random.default_rng([7, 3]), H, W)
    b = render_scene(np.random.default_rng([8, 3]), H, W)
    assert not np.array_equal(a.image, b.image)


def test_box_tightly_bounds_pixels_of_unoccluded_object():
    checked = 0
    for scene in scenes(40):
        for i, box in enumerate(scene.boxes):
            if scene.visible_fraction[i] < 1 or not isolated(scene.boxes, i):
                continue
            rows, cols = np.nonzero(drawn_pixels_near(scene, box))
            drawn_box = [cols.min() + 1, rows.min() + 1, cols.max() + 1, rows.max() + 1]
            np.testing.assert_array_equal(drawn_box, box, err_msg=f"object {i}")
            checked += 1
    assert checked >= 30


def test_circles_fill_about_a_quarter_pi_of_their_box():
    # A disc fills pi/4 of its bounding square (a little less once rasterised at 20..90 px);
    # triangles (<= 0.5), stars (< 0.5) and rings (< 0.65) fill less, so the label names the
    # shape that was drawn.
    fills = []
    for scene in scenes(60, seed=1):
        for i, box in enumerate(scene.boxes):
            circle = scene.labels[i] == SHAPES_CLASSES.index("circle") + 1
            big = box[2] - box[0] >= 20
            whole = scene.visible_fraction[i] == 1 and not scene.truncated[i]
            if circle and big and whole and isolated(scene.boxes, i):
                area = (box[2] - box[0] + 1) * (box[3] - box[1] + 1)
                fills.append(drawn_pixels_near(scene, box).sum() / area)
    assert len(fills) >= 5
    assert min(fills) > 0.68 and max(fills) < np.pi / 4 + 0.02, fills


@pytest.mark.parametrize("kind", SHAPES_CLASSES)
def test_shape_mask_spans_its_diameter(kind):
    mask = shape_mask(kind, 40.0, np.random.default_rng(0))
    rows, cols = np.nonzero(mask)
    # Any rotation of these shapes spans at least 0.8 of the circumscribed diameter.
    assert 32 <= max(np.ptp(rows), np.ptp(cols)) + 1 <= 42


def test_labels_boxes_and_flags_are_consistent():
    for scene in scenes(40, seed=2):
        m = len(scene.labels)
        assert scene.boxes.shape == (m, 4)
        assert np.all((scene.labels >= 1) & (scene.labels <= len(SHAPES_CLASSES)))
        assert np.all(scene.boxes[:, :2] >= 1) and np.all(scene.boxes[:, 2] <= W)
        assert np.all(scene.boxes[:, 3] <= H)
        sides = np.maximum(
            scene.boxes[:, 2] - scene.boxes[:, 0], scene.boxes[:, 3] - scene.boxes[:, 1]
        )
        np.testing.assert_array_equal(scene.difficult[sides + 1 < 16], True)
        on_border = (
            (scene.boxes[:, 0] == 1)
            | (scene.boxes[:, 1] == 1)
            | (scene.boxes[:, 2] == W)
            | (scene.boxes[:, 3] == H)
        )
        np.testing.assert_array_equal(on_border[scene.truncated], True)


def test_scene_mix_has_empty_truncated_difficult_and_occluded_cases():
    all_scenes = scenes(120, seed=3)
    assert sum(len(s.labels) == 0 for s in all_scenes) >= 2
    assert sum(int(s.truncated.sum()) for s in all_scenes) >= 5
    assert sum(int(s.difficult.sum()) for s in all_scenes) >= 5
    assert sum(int((s.visible_fraction < 1).sum()) for s in all_scenes) >= 5
    labels = np.concatenate([s.labels for s in all_scenes])
    assert set(labels.tolist()) == {1, 2, 3, 4, 5}


def test_written_dataset_parses_back_to_the_rendered_annotations(tmp_path):
    root = write_shapes_dataset(
        tmp_path / "shapes", num_train=3, num_test=2, seed=5, height=H, width=W
    )
    train = parse_voc(root, "train")
    test = parse_voc(root, "test")
    assert train.class_names == SHAPES_CLASSES
    assert [r.image_id for r in test] == ["test_000000", "test_000001"]
    expected = render_scene(np.random.default_rng([5, 1, 1]), H, W)
    record = test[1]
    np.testing.assert_array_equal(record.boxes, expected.boxes)
    np.testing.assert_array_equal(record.labels, expected.labels)
    np.testing.assert_array_equal(record.difficult, expected.difficult)
    np.testing.assert_array_equal(record.truncated, expected.truncated)
    assert (record.width, record.height) == (W, H)
    assert (root / "JPEGImages" / "test_000001.jpg").is_file()
