"""Where converted networks live: next to the model file, keyed by the file's content.

A converted artifact (an ONNX file, an OpenVINO IR, a quantised IR) of the model file
`DIR/face.keras` is written to `DIR/.ssd_engines/face-<sha256[:16]>/<artifact>`, so a restart,
or a second replica sharing the folder, finds it and does not convert again, and a changed
model file (a new hash) never meets a stale artifact. Artifact names carry the converter's
version (`network-tf2onnx1.17.0-opset17.onnx`), so a converter upgrade converts anew.

When the model folder cannot be written (a read-only image, site-packages), artifacts go to
`fallback_dir/<stem>-<sha256[:16]>/` instead (the service's `SSD_ENGINE_CACHE_DIR`). A model
held only in memory (no file) is keyed by the hash of its config and weights and cached in the
fallback directory. Artifacts are written under a temporary name and renamed when complete
(`ssd_core.atomic_write`), so a killed conversion never leaves a torn artifact.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path

from ssd_core.atomic_write import atomic_path
from ssd_core.input_files import file_digest
from ssd_core.model import SSD

logger = logging.getLogger(__name__)

CACHE_FOLDER = ".ssd_engines"
KEY_HEX_DIGITS = 16


def default_fallback_dir() -> Path:
    """The fallback when none is given: `<system temp>/ssd_engines`."""
    return Path(tempfile.gettempdir()) / "ssd_engines"


def model_digest(model: SSD) -> str:
    """SHA-256 hex digest of a model's config and weights (for models with no file)."""
    digest = hashlib.sha256(json.dumps(model.ssd_config.to_dict(), sort_keys=True).encode())
    for weight in model.weights:
        digest.update(weight.path.encode())
        digest.update(weight.numpy().tobytes())
    return digest.hexdigest()


class ArtifactCache:
    """The artifact folder of one model.

    Args:
        model: the model (used for the key when `model_path` is None).
        model_path: the `.keras` file the model was loaded from, if any.
        fallback_dir: where artifacts go when the model's folder is not writable; None:
            `default_fallback_dir()`.
    """

    def __init__(
        self, model: SSD, model_path: str | Path | None = None, fallback_dir: Path | None = None
    ) -> None:
        if model_path is not None:
            model_path = Path(model_path)
            stem, digest = model_path.stem, file_digest(model_path)
        else:
            stem, digest = model.name, model_digest(model)
        self.key = f"{stem}-{digest[:KEY_HEX_DIGITS]}"
        fallback = Path(fallback_dir) if fallback_dir is not None else default_fallback_dir()
        beside = model_path.parent / CACHE_FOLDER if model_path is not None else None
        self.directory = _writable(beside, fallback) / self.key

    def path(self, artifact: str) -> Path:
        """Where the artifact named `artifact` (a file or folder name) lives or will live."""
        return self.directory / artifact

    def get_or_make(self, artifact: str, make: Callable[[Path], None]) -> Path:
        """The artifact's path; `make(temporary_path)` writes it first if it is missing."""
        target = self.path(artifact)
        if target.exists():
            logger.info("engine cache hit: %s", target)
            return target
        logger.info("engine cache miss: converting to %s", target)
        with atomic_path(target) as partial:
            make(partial)
        return target


def _writable(preferred: Path | None, fallback: Path) -> Path:
    """`preferred` if it can be created and written, else `fallback` (created)."""
    if preferred is not None:
        try:
            preferred.mkdir(parents=True, exist_ok=True)
            # A real write: os.access says yes to root on a read-only mount.
            with tempfile.NamedTemporaryFile(dir=preferred, prefix=".probe-"):
                return preferred
        except OSError:
            pass
        logger.info("model folder %s is not writable; engine cache in %s", preferred, fallback)
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback
