"""The model repository as the Open Inference Protocol sees it (Triton's model repository
extension and model readiness), for HTTP and gRPC alike.

Index: every model and version of the repository with its state (READY, LOADING, UNLOADING,
UNAVAILABLE) and the reason (a failed load's error). Load: load the latest version of a
model and make it serve (`ModelRepository.load`: beside the old version, which finishes the
requests it accepted); a version that fails to load answers the error and leaves the old one
serving. Unload: stop serving a model; its accepted requests finish. Triton's load parameters
that override the configuration or upload model files (`config`, `file:<version>/<name>`)
are refused: versions come from the repository directory.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from service.errors import InvalidParameterError, ModelNotFoundError
from service.repository import READY, ModelRepository, ModelVersion

UNLOAD_PARAMETERS = frozenset({"unload_dependents"})  # no model depends on another here


def index(repository: ModelRepository, ready_only: bool = False) -> list[dict[str, str]]:
    """The repository index: name, version, state, reason per model version."""
    rows = repository.index()
    return [row for row in rows if row["state"] == READY] if ready_only else rows


async def load(
    repository: ModelRepository, name: str, parameters: Mapping[str, Any]
) -> ModelVersion:
    """Load (or reload) `name`: its latest version serves once loaded and warmed up.

    Raises:
        InvalidParameterError: a parameter other than none (config overrides, model files).
        ModelNotFoundError: the repository has no model `name`.
        ModelLoadError: the latest version failed to load (the one serving before stays).
    """
    if parameters:
        raise InvalidParameterError(
            f"load parameter {sorted(parameters)[0]!r} is not supported: configuration "
            "overrides and uploaded files are not; put the version's model.keras in the "
            "repository directory (<name>/<version>/model.keras) and load again"
        )
    return await repository.load(name)


async def unload(repository: ModelRepository, name: str, parameters: Mapping[str, Any]) -> None:
    """Stop serving `name` (its accepted requests finish first).

    Raises:
        InvalidParameterError: a parameter other than `unload_dependents`.
        ModelNotFoundError: the repository has no model `name`.
    """
    unknown = sorted(set(parameters) - UNLOAD_PARAMETERS)
    if unknown:
        raise InvalidParameterError(
            f"unload parameter {unknown[0]!r} is not supported; only {sorted(UNLOAD_PARAMETERS)}"
        )
    await repository.unload(name)


def model_ready(repository: ModelRepository, name: str, version: str = "") -> bool:
    """Whether `name` (at `version`; empty: the serving one) is loaded and warmed up.

    Raises:
        ModelNotFoundError: the repository has no model `name` at all.
    """
    try:
        repository.route(name, version or None)
    except ModelNotFoundError:
        if name not in repository.models and name not in repository.catalogue_names():
            raise
        return False
    return True
