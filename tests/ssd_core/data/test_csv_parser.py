"""CSV parser on small files written by the tests (generic and Udacity layouts)."""

from __future__ import annotations

import numpy as np
import pytest

from ssd_core.data import DatasetError, load_dataset
from ssd_core.data.csv_format import parse_csv

UDACITY = """frame,xmin,xmax,ymin,ymax,class_id
1478019952686311006.jpg,237,251,143,155,1
1478019952686311006.jpg,437,454,120,186,3
1478019953180167674.jpg,218,231,146,158,1
"""

NAMED = """Filename,Label,xmin,ymin,xmax,ymax,difficult,truncated,width,height
a.png,dog,1,2,30,40,1,0,64,48
b.png,,,,,,,,64,48
a.png,cat,5,5,10,10,0,1,64,48
"""


def write(tmp_path, text, name="labels.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_udacity_layout_with_integer_class_ids(tmp_path):
    dataset = parse_csv(write(tmp_path, UDACITY), class_names=("car", "truck", "pedestrian"))
    assert [r.image_id for r in dataset] == ["1478019952686311006.jpg", "1478019953180167674.jpg"]
    np.testing.assert_array_equal(dataset[0].boxes, [[237, 143, 251, 155], [437, 120, 454, 186]])
    np.testing.assert_array_equal(dataset[0].labels, [1, 3])
    assert dataset[0].image_path == str(tmp_path / "1478019952686311006.jpg")


def test_integer_classes_without_names_are_named_by_number(tmp_path):
    assert parse_csv(write(tmp_path, UDACITY)).class_names == ("1", "2", "3")


def test_named_classes_optional_columns_and_empty_image(tmp_path):
    dataset = parse_csv(write(tmp_path, NAMED), images_dir=tmp_path / "img")
    assert dataset.class_names == ("cat", "dog")
    a, b = dataset
    np.testing.assert_array_equal(a.labels, [2, 1])
    np.testing.assert_array_equal(a.difficult, [True, False])
    np.testing.assert_array_equal(a.truncated, [False, True])
    assert (a.width, a.height) == (64, 48)
    assert b.num_objects == 0
    assert a.image_path == str(tmp_path / "img" / "a.png")


def test_unknown_class_names_file_row_and_object(tmp_path):
    with pytest.raises(DatasetError, match=r"labels.csv row 4 \(a.png\): object 1 has class 'cat'"):
        parse_csv(write(tmp_path, NAMED), class_names=("dog",))


def test_class_id_beyond_class_names_is_an_error(tmp_path):
    with pytest.raises(DatasetError, match="object 1 has class '3'"):
        parse_csv(write(tmp_path, UDACITY), class_names=("car", "truck"))


def test_degenerate_box_fails_with_row(tmp_path):
    text = UDACITY.replace("237,251", "251,237")
    with pytest.raises(DatasetError, match=r"row 2 .*object 0: .*empty"):
        parse_csv(write(tmp_path, text), on_invalid_box="fail")


def test_box_outside_known_size_is_skipped(tmp_path):
    text = NAMED.replace("5,5,10,10", "5,5,90,10")
    assert parse_csv(write(tmp_path, text))[0].num_objects == 1


def test_missing_column_is_reported(tmp_path):
    with pytest.raises(DatasetError, match="no column for 'class'"):
        parse_csv(write(tmp_path, "frame,xmin,ymin,xmax,ymax\na.jpg,1,1,2,2\n"))


def test_load_dataset_csv_spec_with_images_dir(tmp_path):
    write(tmp_path, NAMED, "train.csv")
    dataset = load_dataset(f"csv:{tmp_path}/{{split}}.csv:{tmp_path}/pics", "train")
    assert dataset[0].image_path == str(tmp_path / "pics" / "a.png")
