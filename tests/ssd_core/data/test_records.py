"""ImageRecord / DetectionDataset invariants, relabelling, and dataset spec parsing."""

from __future__ import annotations

import numpy as np
import pytest

from ssd_core.data import DatasetError, DetectionDataset, ImageRecord
from ssd_core.data.sources import split_spec


def record(labels=(1, 2), image_id="a"):
    boxes = np.tile([[0, 0, 5, 5]], (len(labels), 1))
    return ImageRecord("a.jpg", boxes, labels, [False] * len(labels), image_id)


def test_record_normalises_dtypes_and_defaults_truncated():
    r = record()
    assert r.boxes.dtype == np.float32 and r.labels.dtype == np.int32
    np.testing.assert_array_equal(r.truncated, [False, False])


def test_record_arrays_are_read_only():
    with pytest.raises(ValueError):
        record().boxes[0, 0] = 3


def test_record_rejects_background_label():
    with pytest.raises(ValueError, match="labels must be >= 1"):
        record(labels=(0,))


def test_record_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match=r"difficult must have shape \(2,\)"):
        ImageRecord("a.jpg", np.zeros((2, 4)), [1, 1], [False], "a")


def test_dataset_rejects_label_beyond_class_names():
    with pytest.raises(ValueError, match="label 2 but only 1 class names"):
        DetectionDataset((record(),), ("cat",))


def test_with_class_names_relabels_by_name():
    dataset = DetectionDataset((record(),), ("cat", "dog")).with_class_names(("dog", "x", "cat"))
    np.testing.assert_array_equal(dataset[0].labels, [3, 1])


def test_with_class_names_missing_class_is_an_error():
    with pytest.raises(DatasetError, match="object 1 has class 'dog'"):
        DetectionDataset((record(),), ("cat", "dog")).with_class_names(("cat",))


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("voc:/d/VOC2007", ("voc", "/d/VOC2007", None)),
        ("coco:/a/inst.json", ("coco", "/a/inst.json", None)),
        ("coco:/a/inst.json:/a/val2017", ("coco", "/a/inst.json", "/a/val2017")),
        ("csv:/a/b.csv:/imgs", ("csv", "/a/b.csv", "/imgs")),
    ],
)
def test_split_spec(spec, expected):
    assert split_spec(spec) == expected


def test_split_spec_rejects_unknown_format():
    with pytest.raises(ValueError, match="dataset spec must look like"):
        split_spec("kitti:/data")
