"""Files a user hands to the tools: checked up front, and every failure to read one is an
`InputFileError` whose message names the file and what is wrong with it.

The scripts print that message and exit with status 2 (no traceback); see `scripts/`.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path
from typing import Any


class InputFileError(ValueError):
    """A given file is missing, not a regular file, unreadable, truncated or of another format."""

    def __init__(self, path: str | Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.problem = problem


def require_file(path: str | Path, expected: str) -> Path:
    """`path` as a `Path` if it is an existing regular file, else `InputFileError`.

    Args:
        expected: what the file should be, for the message ("a .keras model").
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, f"no such file (expected {expected})")
    if not path.is_file():
        raise InputFileError(path, f"not a regular file (expected {expected})")
    if path.stat().st_size == 0:
        raise InputFileError(path, f"empty file (expected {expected})")
    return path


def load_keras_model(path: str | Path) -> Any:
    """`keras.saving.load_model(path)` of a `.keras` file, with `InputFileError` for a file
    that is missing, truncated or not a Keras archive."""
    import keras

    import ssd_core  # noqa: F401 - registers the custom layers load_model needs

    path = require_file(path, "a .keras model")
    try:
        return keras.saving.load_model(path)
    except (zipfile.BadZipFile, EOFError, OSError, KeyError, ValueError, TypeError) as error:
        raise InputFileError(path, f"not a readable .keras model ({describe(error)})") from error


def file_digest(path: str | Path) -> str:
    """SHA-256 hex digest of a file's bytes (a model's version, an engine cache key)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def describe(error: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
