"""`images:DIR` datasets: the folder's image files as records without objects."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ssd_core.data import DatasetError, load_dataset


def test_image_folder_lists_image_files_in_name_order(tmp_path):
    for name in ("b.png", "a.jpg", "c.JPEG"):
        cv2.imwrite(str(tmp_path / name), np.zeros((4, 6, 3), np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub.png").mkdir()  # a folder, even with an image suffix, is no image
    dataset = load_dataset(f"images:{tmp_path}", "train")
    assert [r.image_id for r in dataset] == ["a", "b", "c"]
    assert all(r.num_objects == 0 for r in dataset)
    assert dataset.class_names == ()


def test_image_folder_fills_in_the_split(tmp_path):
    (tmp_path / "calib").mkdir()
    cv2.imwrite(str(tmp_path / "calib" / "x.png"), np.zeros((4, 6, 3), np.uint8))
    assert len(load_dataset(f"images:{tmp_path}/{{split}}", "calib")) == 1


def test_image_folder_without_images_is_an_error(tmp_path):
    with pytest.raises(DatasetError, match="no image files"):
        load_dataset(f"images:{tmp_path}", "train")
    with pytest.raises(DatasetError, match="no such folder"):
        load_dataset(f"images:{tmp_path}/missing", "train")
