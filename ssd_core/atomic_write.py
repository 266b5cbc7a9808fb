"""Write outputs so that a crash or a kill never leaves a torn file in place of a good one.

Every file or directory the tools produce is written under a temporary name next to its target
(same directory, so the same filesystem) and renamed over the target once complete
(`os.replace`, atomic on POSIX): the target holds the old content or the new one, never part of
either. A process killed mid-write leaves only a hidden `.NAME.partial-XXXXXXXX.SUFFIX`, which
`remove_stale_temporaries` deletes on the next run.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger(__name__)

TEMP_MARKER = ".partial-"


def temporary_sibling(target: Path) -> Path:
    """A fresh hidden name next to `target` with its suffix, which writers such as Keras
    (`.keras`) and matplotlib (`.png`) read the format from: `a/model.keras` ->
    `a/.model.partial-1f2e3d4c.keras`."""
    return target.parent / f".{target.stem}{TEMP_MARKER}{secrets.token_hex(4)}{target.suffix}"


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write `target`'s new content to (a file or a directory).

    When the block ends normally the temporary replaces `target`; when it raises, the
    temporary is removed and `target` is left as it was. A directory can only replace a
    missing or empty directory (the rename refuses to drop a non-empty one).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_sibling(target)
    try:
        yield temporary
        if not temporary.exists():
            raise FileNotFoundError(f"nothing was written to {temporary} for {target}")
        if temporary.is_file():
            _fsync(temporary)
        os.replace(temporary, target)
        _fsync(target.parent)
    except BaseException:
        _remove(temporary)
        raise


def write_text(target: str | Path, text: str) -> None:
    """Replace `target` with `text` (UTF-8), atomically."""
    with atomic_path(target) as temporary:
        temporary.write_text(text, encoding="utf-8")


def write_bytes(target: str | Path, data: bytes) -> None:
    """Replace `target` with `data`, atomically."""
    with atomic_path(target) as temporary:
        temporary.write_bytes(data)


def remove_stale_temporaries(directory: str | Path) -> list[Path]:
    """Delete the temporaries a killed writer left in `directory`; returns what was removed."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    stale = [p for p in directory.iterdir() if p.name.startswith(".") and TEMP_MARKER in p.name]
    for path in stale:
        logger.info("removing %s, left by an interrupted write", path)
        _remove(path)
    return stale


def _fsync(path: Path) -> None:
    """Flush a file's or directory's data to disk before (or after) the rename relies on it."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
