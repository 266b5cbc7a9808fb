"""Result files, the AP table and the pixel scaling of model outputs."""

from __future__ import annotations

import math

import pytest

from ssd_core.evaluation import evaluate_voc
from ssd_core.evaluation.reports import ap_table, plot_pr_curves, write_voc_result_files


def test_voc_result_files_have_one_line_per_detection_in_server_format(tmp_path):
    dets = [
        {"image_id": "000001", "label": 2, "score": 0.5, "box": [1, 2, 30.25, 40]},
        {"image_id": "000004", "label": 2, "score": 0.25, "box": [5, 6, 7, 8]},
    ]
    paths = write_voc_result_files(dets, ("cat", "dog"), tmp_path)
    assert [p.name for p in paths] == ["comp4_det_test_cat.txt", "comp4_det_test_dog.txt"]
    assert paths[0].read_text() == ""
    assert paths[1].read_text().splitlines() == [
        "000001 0.500000 1.0 2.0 30.2 40.0",
        "000004 0.250000 5.0 6.0 7.0 8.0",
    ]


def test_voc_result_files_reject_label_outside_class_list(tmp_path):
    dets = [{"image_id": "a", "label": 3, "score": 0.5, "box": [1, 2, 3, 4]}]
    with pytest.raises(ValueError, match="label 3 is outside 1..2"):
        write_voc_result_files(dets, ("cat", "dog"), tmp_path)


def test_ap_table_lists_classes_and_marks_missing_ap():
    table = ap_table({1: 0.5, 2: math.nan}, ("cat", "dog"), 0.5)
    assert table.splitlines() == ["class  AP", "cat    0.5000", "dog    n/a", "mAP    0.5000"]


def test_pr_plots_one_per_class_plus_summary(tmp_path):
    truth = {"a": [{"label": 1, "box": [0, 0, 9, 9], "difficult": False}]}
    result = evaluate_voc([{"image_id": "a", "label": 1, "score": 1, "box": [0, 0, 9, 9]}], truth)
    paths = plot_pr_curves(result, ("cat/dog",), tmp_path)
    assert [p.name for p in paths] == ["pr_cat_dog.png", "pr_summary.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)
