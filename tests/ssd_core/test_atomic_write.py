"""ssd_core.atomic_write: the target holds the old or the new content, never a torn file."""

from __future__ import annotations

import pytest

from ssd_core.atomic_write import (
    atomic_path,
    remove_stale_temporaries,
    temporary_sibling,
    write_bytes,
    write_text,
)


def test_write_text_replaces_the_content_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "results.json"
    target.write_text("old")
    write_text(target, '{"mAP": 1.0}')
    assert target.read_text() == '{"mAP": 1.0}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


def test_a_write_that_fails_half_way_keeps_the_old_file(tmp_path):
    target = tmp_path / "model.keras"
    write_bytes(target, b"previous model")
    with pytest.raises(RuntimeError, match="disk full"), atomic_path(target) as temporary:
        temporary.write_bytes(b"half of the new")
        raise RuntimeError("disk full")
    assert target.read_bytes() == b"previous model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]


def test_temporary_keeps_the_suffix_writers_read_the_format_from(tmp_path):
    temporary = temporary_sibling(tmp_path / "pr_circle.png")
    assert temporary.parent == tmp_path
    assert temporary.name.startswith(".pr_circle.partial-") and temporary.suffix == ".png"


def test_a_directory_appears_complete_and_never_replaces_a_full_one(tmp_path):
    target = tmp_path / "export" / "1"
    with atomic_path(target) as temporary:
        temporary.mkdir()
        (temporary / "saved_model.pb").write_bytes(b"graph")
        assert not target.exists()
    assert (target / "saved_model.pb").read_bytes() == b"graph"
    with pytest.raises(OSError), atomic_path(target) as temporary:
        temporary.mkdir()
        (temporary / "saved_model.pb").write_bytes(b"other graph")
    assert (target / "saved_model.pb").read_bytes() == b"graph"
    assert sorted(p.name for p in target.parent.iterdir()) == ["1"]


def test_a_block_that_writes_nothing_fails_and_keeps_the_target(tmp_path):
    target = tmp_path / "a.json"
    target.write_text("kept")
    with pytest.raises(FileNotFoundError, match="nothing was written"), atomic_path(target):
        pass
    assert target.read_text() == "kept"


def test_remove_stale_temporaries_removes_only_interrupted_writes(tmp_path):
    (tmp_path / ".model.partial-0a1b2c3d.keras").write_bytes(b"torn")
    (tmp_path / ".export.partial-0a1b2c3d").mkdir()
    (tmp_path / ".hidden_user_file").write_text("mine")
    (tmp_path / "model.keras").write_bytes(b"good")
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == [
        ".export.partial-0a1b2c3d",
        ".model.partial-0a1b2c3d.keras",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden_user_file", "model.keras"]
