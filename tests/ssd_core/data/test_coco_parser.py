"""COCO instances parser on small JSON files written by the tests."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ssd_core.data import DatasetError, load_dataset
from ssd_core.data.coco import parse_coco


def coco_file(tmp_path, annotations=None, images=None):
    data = {
        "images": images
        or [
            {"id": 7, "file_name": "a.jpg", "width": 100, "height": 80},
            {"id": 9, "file_name": "b.jpg", "width": 50, "height": 50},
        ],
        "categories": [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"}],
        "annotations": annotations
        if annotations is not None
        else [
            {"id": 1, "image_id": 7, "category_id": 18, "bbox": [10, 20, 30, 40], "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 1, "bbox": [0, 0, 100, 80], "iscrowd": 1},
        ],
    }
    path = tmp_path / "instances_val.json"
    path.write_text(json.dumps(data))
    return path


def test_categories_map_to_contiguous_labels_in_id_order(tmp_path):
    dataset = parse_coco(coco_file(tmp_path))
    assert dataset.class_names == ("person", "dog")
    np.testing.assert_array_equal(dataset[0].labels, [2, 1])


def test_bbox_xywh_becomes_pixel_corners(tmp_path):
    record = parse_coco(coco_file(tmp_path))[0]
    np.testing.assert_array_equal(record.boxes, [[10, 20, 40, 60], [0, 0, 100, 80]])
    assert (record.width, record.height, record.image_id) == (100, 80, "7")


def test_crowd_regions_are_difficult_and_not_training_objects(tmp_path):
    record = parse_coco(coco_file(tmp_path))[0]
    np.testing.assert_array_equal(record.difficult, [False, True])
    np.testing.assert_array_equal(record.crowd, [False, True])
    boxes, labels = record.training_objects()
    np.testing.assert_array_equal(boxes, [[10, 20, 40, 60]])
    np.testing.assert_array_equal(labels, record.labels[:1])


def test_image_without_annotations_is_kept_and_images_dir_used(tmp_path):
    dataset = parse_coco(coco_file(tmp_path), images_dir=tmp_path / "val2017")
    assert dataset[1].num_objects == 0
    assert dataset[1].image_path == str(tmp_path / "val2017" / "b.jpg")


def test_user_class_names_match_by_name(tmp_path):
    dataset = parse_coco(coco_file(tmp_path), class_names=("dog", "cat", "person"))
    np.testing.assert_array_equal(dataset[0].labels, [1, 3])


def test_category_outside_class_names_names_the_annotation(tmp_path):
    with pytest.raises(DatasetError, match=r"annotation id 2: object 1 has class 'person'"):
        parse_coco(coco_file(tmp_path), class_names=("dog",))


def test_invalid_box_fails_with_annotation_id(tmp_path):
    anns = [{"id": 5, "image_id": 9, "category_id": 1, "bbox": [40, 10, 30, 10]}]
    with pytest.raises(DatasetError, match=r"annotation id 5: object 0: .*outside"):
        parse_coco(coco_file(tmp_path, anns), on_invalid_box="fail")


def test_zero_width_box_is_skipped(tmp_path):
    anns = [{"id": 5, "image_id": 9, "category_id": 1, "bbox": [10, 10, 0, 10]}]
    assert parse_coco(coco_file(tmp_path, anns), on_invalid_box="skip")[1].num_objects == 0


def test_annotation_of_unknown_image_is_reported(tmp_path):
    anns = [{"id": 5, "image_id": 3, "category_id": 1, "bbox": [1, 1, 5, 5]}]
    with pytest.raises(DatasetError, match="annotation id 5: refers to image id 3"):
        parse_coco(coco_file(tmp_path, anns))


def test_load_dataset_fills_split_into_coco_paths(tmp_path):
    coco_file(tmp_path)
    spec = f"coco:{tmp_path}/instances_{{split}}.json:{tmp_path}/images_{{split}}"
    dataset = load_dataset(spec, "val")
    assert dataset[0].image_path == str(tmp_path / "images_val" / "a.jpg")


def test_file_without_required_lists_is_reported(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"images": []}))
    with pytest.raises(DatasetError, match="needs a list 'annotations'"):
        parse_coco(path)
