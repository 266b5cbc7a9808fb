"""The model repository: which models exist, which version of each is loaded, and reloads.

Sources (`Catalogue`): a directory in Triton's layout, `DIR/<name>/<version>/model.keras`
(integer versions); the embedded models (`face`, `shapes`); or one model (`SSD_MODEL_PATH`, or
a loader a test passes), named by its config once loaded. Each model serves its latest version
(Triton's default version policy). Every loaded version has its own `Detector`, dynamic
batcher, warm-up and metrics labels.

Reload: `load(name)` builds and warms the latest version beside the serving one, then routes
new requests to it; requests already accepted by the old version finish there, and the old one
is released once it is idle. A version that fails to load leaves the serving one in place; the
error goes to the log and to `index()` (state UNAVAILABLE, reason). All of this runs on the
event loop; blocking work (loading, warm-up) runs in daemon threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from service.batcher import DynamicBatcher
from service.detector import (
    Detector,
    EngineSetting,
    ImageResult,
    load_detector,
    random_detector,
)
from service.errors import ModelLoadError, ModelNotFoundError
from service.memory import freeze_heap
from service.metrics import ModelMetrics, ServiceMetrics
from service.settings import Settings
from service.startup import run_in_daemon_thread
from service.thread_priority import compute_nice, lower_compute_threads

logger = logging.getLogger(__name__)

Loader = Callable[[], Detector]
MODEL_FILE = "model.keras"
MAX_REASON_CHARS = 500
READY, LOADING, UNLOADING, UNAVAILABLE = "READY", "LOADING", "UNLOADING", "UNAVAILABLE"


@dataclass(frozen=True)
class VersionFile:
    """One loadable version: `load` builds its `Detector` (blocking). `stamp` changes when the
    file does (a failed version is retried by the poller only then)."""

    load: Loader
    stamp: float = 0.0


class Catalogue(Protocol):
    """What the repository can load: model name -> version -> `VersionFile`."""

    def scan(self) -> dict[str, dict[int, VersionFile]]: ...


class DirectoryCatalogue:
    """Triton's layout: `root/<name>/<version>/model.keras`; non-integer folders are ignored.

    Args:
        engines: the engine setting of a model by its name (`Settings.engine_for`).
    """

    def __init__(
        self, root: Path, engines: Callable[[str], EngineSetting] = lambda _: EngineSetting()
    ) -> None:
        self.root = root
        self.engines = engines

    def scan(self) -> dict[str, dict[int, VersionFile]]:
        models: dict[str, dict[int, VersionFile]] = {}
        for model_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
            versions = {}
            for version_dir in model_dir.iterdir():
                if (
                    version_dir.is_dir()
                    and version_dir.name.isascii()
                    and version_dir.name.isdigit()
                ):
                    versions[int(version_dir.name)] = self._file(version_dir, model_dir.name)
            if versions:
                models[model_dir.name] = versions
        return models

    def _file(self, version_dir: Path, name: str) -> VersionFile:
        path = version_dir / MODEL_FILE
        try:
            stamp = path.stat().st_mtime
        except OSError:
            stamp = 0.0
        load = functools.partial(load_detector, path, version_dir.name, self.engines(name))
        return VersionFile(load=load, stamp=stamp)


class FixedCatalogue:
    """Models known up front (embedded files, one model file, a test's loader)."""

    def __init__(self, models: dict[str, dict[int, VersionFile]]) -> None:
        self.models = models

    def scan(self) -> dict[str, dict[int, VersionFile]]:
        return self.models


class ModelVersion:
    """One loaded, warmed-up version of a model, with its batcher and metrics."""

    def __init__(
        self, name: str, version: int, detector: Detector, batcher: DynamicBatcher[ImageResult]
    ) -> None:
        self.name = name
        self.version = str(version)
        self.detector = detector
        self.batcher = batcher
        self.metrics: ModelMetrics = batcher.metrics
        self.in_flight = 0
        self.draining = False
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        self.in_flight += 1
        self._idle.clear()

    def leave(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()


@dataclass
class ModelEntry:
    """A model of the repository: what serves now and the state of each version seen."""

    name: str
    current: ModelVersion | None = None
    wanted: bool = True  # should be loaded (readiness waits for it)
    states: dict[int, tuple[str, str]] = field(default_factory=dict)  # version -> (state, reason)
    failed: dict[int, float] = field(default_factory=dict)  # version -> stamp of the failed file
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class ModelRepository:
    """The models of one service process, each with its latest version loaded.

    Args:
        settings: batching settings for every model; `default_model`.
        catalogue: where models come from; None with `single` given: one model.
        single: a loader of the only model, named by its config once loaded.
        metrics: the service's metrics (each version gets a labelled view).
    """

    def __init__(
        self,
        settings: Settings,
        metrics: ServiceMetrics,
        catalogue: Catalogue | None = None,
        single: Loader | None = None,
    ) -> None:
        if (catalogue is None) == (single is None):
            raise ValueError("give exactly one of catalogue and single")
        self.settings = settings
        self.metrics = metrics
        self.catalogue = catalogue
        self._single = single
        self.models: dict[str, ModelEntry] = {}
        self.default_name: str | None = settings.default_model
        self._retiring: set[asyncio.Task[None]] = set()
        self.started = False

    @property
    def ready(self) -> bool:
        """Started, and every model that should be loaded serves a warmed-up version."""
        return self.started and all(
            entry.current is not None for entry in self.models.values() if entry.wanted
        )

    async def start(self) -> None:
        """Load every model of the catalogue (latest version each).

        Raises:
            ModelLoadError / ModelFileError: the default model could not be loaded.
            ModelNotFoundError: `SSD_DEFAULT_MODEL` names no model of the repository.
        """
        if self._single is not None:
            detector = await self._load_single(self._single)
            self.catalogue = FixedCatalogue({detector.name: {1: VersionFile(lambda: detector)}})
            self.default_name = detector.name
        assert self.catalogue is not None
        names = sorted(self.catalogue.scan())
        if self.default_name is None and names:
            self.default_name = names[0]
        if self.default_name not in names:
            raise ModelNotFoundError(
                f"default model {self.default_name!r} is not in the repository {names}"
            )
        for name in [self.default_name, *(n for n in names if n != self.default_name)]:
            try:
                await self.load(name)
            except ModelLoadError:
                if name == self.default_name:
                    raise
                self.models[name].wanted = False  # logged and in the index; others serve
        self.started = True

    @staticmethod
    async def _load_single(loader: Loader) -> Detector:
        """The only model (`SSD_MODEL_PATH`); an engine that cannot run it (a missing extra or
        int8 network: the message says what to do) is a `ModelLoadError` naming it."""
        from ssd_core.engines import EngineUnavailableError

        try:
            return await run_in_daemon_thread(loader)
        except EngineUnavailableError as error:
            raise ModelLoadError(f"cannot run the model: {error}") from error

    def route(self, name: str | None, version: str | None = None) -> ModelVersion:
        """The loaded version that serves a request for `name` (None: the default model) and
        `version` (None: the current one).

        Raises:
            ModelNotFoundError: no such model, or that version is not loaded.
        """
        name = name or self.default_name or ""
        entry = self.models.get(name)
        current = entry.current if entry is not None else None
        if current is None:
            raise ModelNotFoundError(f"unknown model {name!r}, or it is not loaded")
        if version in (None, "", current.version):
            return current
        raise ModelNotFoundError(f"model {name!r} version {version!r} is not loaded")

    async def load(self, name: str) -> ModelVersion:
        """Load (or keep) the latest version of `name` and make it serve.

        Raises:
            ModelNotFoundError: the catalogue has no model `name`.
            ModelLoadError: the latest version failed to load (the serving one stays).
        """
        assert self.catalogue is not None
        versions = self.catalogue.scan().get(name)
        if not versions:
            raise ModelNotFoundError(f"model {name!r} is not in the repository")
        entry = self.models.setdefault(name, ModelEntry(name))
        entry.wanted = True
        async with entry.lock:
            latest = max(versions)
            if entry.current is not None and entry.current.version == str(latest):
                return entry.current
            model = await self._build(entry, latest, versions[latest])
            old, entry.current = entry.current, model
            entry.states[latest] = (READY, "")
            logger.info("model %s version %d serving", name, latest)
            freeze_heap()
            if old is not None:
                self._retire(entry, old)
            return model

    async def unload(self, name: str) -> None:
        """Stop routing to `name`; its accepted requests finish, then it is released.

        Raises:
            ModelNotFoundError: no model `name` is known.
        """
        entry = self.models.get(name)
        if entry is None:
            if name in self.catalogue_names():
                return  # in the repository, never loaded: nothing to stop
            raise ModelNotFoundError(f"unknown model {name!r}")
        async with entry.lock:
            entry.wanted = False
            old, entry.current = entry.current, None
            if old is not None:
                self._retire(entry, old)

    async def poll_once(self) -> None:
        """Load new latest versions, load new models, unload models whose folder is gone.
        A version that failed is retried only when its file changed."""
        assert self.catalogue is not None
        scanned = self.catalogue.scan()
        for name, versions in scanned.items():
            entry = self.models.get(name)
            latest = max(versions)
            if entry is not None and (
                not entry.wanted
                or (entry.current is not None and entry.current.version == str(latest))
                or entry.failed.get(latest) == versions[latest].stamp
            ):
                continue
            with contextlib.suppress(ModelLoadError, ModelNotFoundError):  # logged, in the index
                await self.load(name)
        for name in [n for n, e in self.models.items() if n not in scanned and e.wanted]:
            await self.unload(name)

    async def poll_forever(self, period_s: float) -> None:
        """`poll_once` every `period_s` seconds (a failing scan is logged, never fatal)."""
        while True:
            await asyncio.sleep(period_s)
            try:
                await self.poll_once()
            except Exception:
                logger.exception("repository scan failed")

    def index(self) -> list[dict[str, str]]:
        """Every model and version seen: name, version, state, reason (Triton's index)."""
        assert self.catalogue is not None
        rows = []
        scanned = self.catalogue.scan()
        for name in sorted(set(scanned) | set(self.models)):
            entry = self.models.get(name)
            states = dict(entry.states) if entry is not None else {}
            for version in sorted(set(states) | set(scanned.get(name, {}))):
                state, reason = states.get(version, (UNAVAILABLE, "not loaded"))
                rows.append(
                    {"name": name, "version": str(version), "state": state, "reason": reason}
                )
        return rows

    def catalogue_names(self) -> set[str]:
        """The model names the repository source holds now (loaded or not)."""
        return set() if self.catalogue is None else set(self.catalogue.scan())

    def loaded(self) -> list[ModelVersion]:
        """The versions that serve now."""
        return [e.current for e in self.models.values() if e.current is not None]

    async def close(self) -> None:
        """Stop every batcher (after the caller drained the requests)."""
        for task in list(self._retiring):
            task.cancel()
        for model in self.loaded():
            await model.batcher.close(timeout_s=1.0)

    async def _build(self, entry: ModelEntry, version: int, file: VersionFile) -> ModelVersion:
        entry.states[version] = (LOADING, "")
        nice = compute_nice(self.settings.compute_nice)
        try:
            detector = await run_in_daemon_thread(file.load)
            batcher: DynamicBatcher[ImageResult] = DynamicBatcher(
                detector.predict_batch,
                max_batch_size=self.settings.max_batch_size,
                max_batch_delay_s=self.settings.max_batch_delay_ms / 1000.0,
                max_queue_size=self.settings.max_queue_size,
                metrics=self.metrics.for_model(entry.name, str(version)),
                thread_nice=nice,
            )
            await run_in_daemon_thread(lambda: detector.warm_up(batcher.batch_sizes))
            # The engine's pools started during the load and warm-up: lower them too.
            lower_compute_threads(nice, threading.get_native_id())
        except Exception as error:
            reason = _reason(error)
            entry.states[version] = (UNAVAILABLE, reason)
            entry.failed[version] = file.stamp
            logger.error("model %s version %d failed to load: %s", entry.name, version, reason)
            if entry.current is not None:
                logger.error("model %s keeps serving version %s", entry.name, entry.current.version)
            raise ModelLoadError(
                f"model {entry.name!r} version {version} failed to load: {reason}"
            ) from error
        batcher.start()
        entry.failed.pop(version, None)
        return ModelVersion(entry.name, version, detector, batcher)

    def _retire(self, entry: ModelEntry, old: ModelVersion) -> None:
        """Release `old` once the requests it accepted are answered (in the background)."""
        old.draining = True
        entry.states[int(old.version)] = (UNLOADING, "")

        async def release() -> None:
            await old.wait_idle()
            await old.batcher.close(timeout_s=self.settings.shutdown_grace_s)
            entry.states[int(old.version)] = (UNAVAILABLE, "unloaded")
            logger.info("model %s version %s released", old.name, old.version)

        loop = asyncio.get_running_loop()
        task = loop.create_task(release(), name=f"retire-{old.name}")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        # Once nothing refers to the released version any more, its cycles can be collected.
        task.add_done_callback(lambda _: loop.call_soon(freeze_heap))


def _reason(error: BaseException) -> str:
    """One line for the index and the log: the message of our errors, else type and message."""
    text = getattr(error, "message", None) or f"{type(error).__name__}: {error}"
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_REASON_CHARS else text[:MAX_REASON_CHARS] + "..."


def repository_for(
    settings: Settings, metrics: ServiceMetrics, loader: Loader | None = None
) -> ModelRepository:
    """The repository the settings name; `loader` (tests) serves one given model."""
    if loader is not None:
        return ModelRepository(settings, metrics, single=loader)
    catalogue, single = _catalogue_for(settings)
    repository = ModelRepository(settings, metrics, catalogue=catalogue, single=single)
    if repository.default_name is None and isinstance(catalogue, FixedCatalogue):
        from ssd_core.assets import DEFAULT_MODEL

        repository.default_name = DEFAULT_MODEL
    return repository


def _catalogue_for(settings: Settings) -> tuple[Catalogue | None, Loader | None]:
    """The repository source the settings name: (catalogue, None) or (None, single loader).

    Without SSD_MODEL_REPOSITORY and SSD_MODEL_PATH: the embedded models. A missing embedded
    file fails its load with an error naming the path (the default one stops start-up), unless
    SSD_ALLOW_RANDOM_MODEL serves a randomly initialised SSD7 instead.
    """
    import ssd_core

    def engine(name: str | None) -> EngineSetting:
        chosen, precision = settings.engine_for(name)
        sizes = tuple(sorted({1, settings.max_batch_size}))
        return EngineSetting(chosen, precision, settings.engine_cache_dir, sizes)

    if settings.model_repository is not None:
        return DirectoryCatalogue(settings.model_repository, engine), None
    if settings.model_path is not None:
        path = settings.model_path
        # One model file, named by its config only once loaded: the bare setting applies.
        return None, lambda: load_detector(path, settings.model_version, engine(None))
    embedded = ssd_core.embedded_models()
    missing = [str(path) for path in embedded.values() if not path.is_file()]
    if missing and settings.allow_random_model:
        logger.warning("embedded model file(s) missing: %s", ", ".join(missing))
        return None, random_detector
    return FixedCatalogue(
        {
            name: {
                1: VersionFile(
                    functools.partial(load_detector, path, settings.model_version, engine(name))
                )
            }
            for name, path in embedded.items()
        }
    ), None
