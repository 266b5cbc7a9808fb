"""Checks of a model file before and after it is loaded, each failure one clear sentence.

`check_model_file` only stats the path and reads a regular file's zip directory, so it never
blocks (a FIFO is refused from its file type, never opened) and needs no TensorFlow; it runs
when the settings are read.
"""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path


class ModelFileError(ValueError):
    """The model file cannot be served; the message says why and names the path."""


def check_model_file(path: Path) -> None:
    """Refuse what cannot be a readable `.keras` model: missing, not a regular file,
    unreadable, empty, not a zip archive, or a zip without a Keras `config.json`.

    Raises:
        ModelFileError: one sentence naming `path` and the problem.
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ModelFileError(f"{path} does not exist") from None
    except OSError as error:
        raise ModelFileError(f"{path} cannot be examined: {error.strerror}") from None
    if stat.S_ISDIR(mode):
        raise ModelFileError(f"{path} is a directory; point it at a .keras model file")
    if not stat.S_ISREG(mode):
        raise ModelFileError(
            f"{path} is not a regular file (a FIFO, socket or device); "
            "point it at a .keras model file"
        )
    if not os.access(path, os.R_OK):
        raise ModelFileError(f"{path} is not readable by this process (permission denied)")
    if path.stat().st_size == 0:
        raise ModelFileError(f"{path} is empty (0 bytes)")
    _check_keras_archive(path)


def _check_keras_archive(path: Path) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except zipfile.BadZipFile:
        raise ModelFileError(
            f"{path} is not a Keras .keras archive (not a zip file: truncated, corrupt "
            "or another format)"
        ) from None
    except OSError as error:
        raise ModelFileError(f"{path} cannot be read: {error.strerror}") from None
    if "config.json" not in names:
        raise ModelFileError(f"{path} is a zip file but not a Keras model (no config.json)")


def load_error(path: Path, error: Exception) -> ModelFileError:
    """A loader exception as one line: its type and the first line of its message."""
    first_line = (str(error).strip().splitlines() or [""])[0][:300]
    return ModelFileError(
        f"{path} could not be loaded as a Keras model ({type(error).__name__}: {first_line})"
    )
