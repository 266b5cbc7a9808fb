"""Pascal VOC parser on small annotation files written by the tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ssd_core.data import DatasetError, load_dataset, parse_voc

FULL_XML = """<annotation>
  <filename>img_a.png</filename>
  <size><width>200</width><height>100</height><depth>3</depth></size>
  <object><name>dog</name><difficult>1</difficult><truncated>1</truncated>
    <bndbox><xmin>10</xmin><ymin>20</ymin><xmax>50.5</xmax><ymax>60</ymax></bndbox></object>
  <object><name>cat</name>
    <bndbox><xmin>1</xmin><ymin>1</ymin><xmax>200</xmax><ymax>100</ymax></bndbox></object>
</annotation>"""

MINIMAL_XML = """<annotation>
  <object><name>cat</name>
    <bndbox><xmin>5</xmin><ymin>6</ymin><xmax>7</xmax><ymax>8</ymax></bndbox></object>
</annotation>"""

EMPTY_XML = """<annotation><filename>c.jpg</filename>
  <size><width>30</width><height>40</height></size></annotation>"""


def write_voc(root: Path, annotations: dict[str, str], split: str = "train") -> Path:
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    for image_id, xml in annotations.items():
        (root / "Annotations" / f"{image_id}.xml").write_text(xml)
    (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(annotations) + "\n")
    return root


def test_reads_boxes_labels_and_optional_flags(tmp_path):
    root = write_voc(tmp_path / "voc", {"a": FULL_XML})
    dataset = parse_voc(root, "train")
    assert dataset.class_names == ("cat", "dog")  # sorted names found in the split
    record = dataset[0]
    np.testing.assert_array_equal(record.boxes, [[10, 20, 50.5, 60], [1, 1, 200, 100]])
    assert record.boxes.dtype == np.float32
    np.testing.assert_array_equal(record.labels, [2, 1])
    np.testing.assert_array_equal(record.difficult, [True, False])
    np.testing.assert_array_equal(record.truncated, [True, False])
    assert (record.width, record.height) == (200, 100)
    assert record.image_path == str(root / "JPEGImages" / "img_a.png")
    assert record.image_id == "a"


def test_missing_filename_size_and_flags_use_defaults(tmp_path):
    root = write_voc(tmp_path / "voc", {"b": MINIMAL_XML})
    record = parse_voc(root, "train")[0]
    assert record.image_path == str(root / "JPEGImages" / "b.jpg")
    assert (record.width, record.height) == (None, None)
    np.testing.assert_array_equal(record.difficult, [False])
    np.testing.assert_array_equal(record.truncated, [False])


def test_image_without_objects_is_kept(tmp_path):
    root = write_voc(tmp_path / "voc", {"a": FULL_XML, "c": EMPTY_XML})
    dataset = parse_voc(root, "train")
    assert [r.image_id for r in dataset] == ["a", "c"]
    assert dataset[1].boxes.shape == (0, 4)
    assert dataset[1].labels.shape == (0,)


def test_labels_file_sets_class_order(tmp_path):
    root = write_voc(tmp_path / "voc", {"a": FULL_XML})
    (root / "labels.txt").write_text("dog\ncat\nbird\n")
    dataset = parse_voc(root, "train")
    assert dataset.class_names == ("dog", "cat", "bird")
    np.testing.assert_array_equal(dataset[0].labels, [1, 2])


def test_user_class_names_override(tmp_path):
    root = write_voc(tmp_path / "voc", {"a": FULL_XML})
    dataset = parse_voc(root, "train", class_names=("x", "cat", "dog"))
    np.testing.assert_array_equal(dataset[0].labels, [3, 2])
    assert dataset.num_classes == 4


def test_unknown_class_names_file_and_object(tmp_path):
    root = write_voc(tmp_path / "voc", {"a": FULL_XML})
    with pytest.raises(DatasetError, match=r"a\.xml: object 1 has class 'cat'"):
        parse_voc(root, "train", class_names=("dog",))


@pytest.mark.parametrize(
    "box, reason",
    [((50, 20, 40, 60), "empty"), ((10, 20, 10, 60), "empty"), ((10, 20, 260, 60), "outside")],
)
def test_invalid_box_fails_with_file_and_object(tmp_path, box, reason):
    xml = FULL_XML.replace("<xmin>10</xmin>", f"<xmin>{box[0]}</xmin>").replace(
        "<xmax>50.5</xmax>", f"<xmax>{box[2]}</xmax>"
    )
    root = write_voc(tmp_path / "voc", {"a": xml})
    with pytest.raises(DatasetError, match=rf"a\.xml: object 0: .*{reason}"):
        parse_voc(root, "train", on_invalid_box="fail")


def test_invalid_box_is_skipped_and_logged(tmp_path, caplog):
    xml = FULL_XML.replace("<xmax>50.5</xmax>", "<xmax>5</xmax>")
    root = write_voc(tmp_path / "voc", {"a": xml})
    record = parse_voc(root, "train", on_invalid_box="skip")[0]
    np.testing.assert_array_equal(record.labels, [1])
    assert "a.xml: object 0" in caplog.text


def test_missing_split_file_is_reported(tmp_path):
    root = write_voc(tmp_path / "voc", {"a": FULL_XML})
    with pytest.raises(DatasetError, match="test.txt"):
        parse_voc(root, "test")


def test_rejects_unknown_on_invalid_box_mode(tmp_path):
    root = write_voc(tmp_path / "voc", {"a": FULL_XML})
    with pytest.raises(ValueError, match="on_invalid_box must be one of"):
        parse_voc(root, "train", on_invalid_box="ignore")


def test_load_dataset_joins_voc_dirs_with_one_class_list(tmp_path):
    first = write_voc(tmp_path / "v07", {"a": FULL_XML})
    second = write_voc(tmp_path / "v12", {"a": MINIMAL_XML.replace("cat", "bird")})
    dataset = load_dataset(f"voc:{first},voc:{second}", "train")
    assert dataset.class_names == ("cat", "dog", "bird")
    assert [r.image_id for r in dataset] == ["a", "1/a"]
    np.testing.assert_array_equal(dataset[0].labels, [2, 1])
    np.testing.assert_array_equal(dataset[1].labels, [3])


def test_ground_truth_export_matches_records(tmp_path):
    root = write_voc(tmp_path / "voc", {"a": FULL_XML})
    truth = parse_voc(root, "train").ground_truth()
    assert truth == {
        "a": [
            {"label": 2, "box": [10.0, 20.0, 50.5, 60.0], "difficult": True},
            {"label": 1, "box": [1.0, 1.0, 200.0, 100.0], "difficult": False},
        ]
    }


def test_malformed_xml_names_the_file(tmp_path):
    root = write_voc(tmp_path / "voc", {"a": "<annotation><object>"})
    with pytest.raises(DatasetError, match=r"a\.xml: not valid XML"):
        parse_voc(root, "train")


def test_object_without_bndbox_names_file_and_object(tmp_path):
    xml = "<annotation><object><name>cat</name></object></annotation>"
    root = write_voc(tmp_path / "voc", {"a": xml})
    with pytest.raises(DatasetError, match=r"a\.xml: object 0 has no <bndbox>"):
        parse_voc(root, "train")
