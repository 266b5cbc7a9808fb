"""What every protocol shares: the model repository (a detector and a batcher per loaded model
version), the decode pool and the lifecycle state.

`Runtime.detect` is the one request path (route to a model version, check the parameters
against its decoder, decode and resize in the worker pool, batch, boxes back to pixels through
`ssd_core.inference`); the HTTP apps and the gRPC servicers only translate their wire
formats to and from it, so all protocols share each model's batches.
Lifecycle: `start()` loads and warms up the repository's models, then `ready` turns true;
`begin_shutdown()` turns `ready` false and refuses new requests; `drain()` waits for accepted
ones to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from service.batcher import BatchLimits, DynamicBatcher
from service.detector import Detector, ImageResult
from service.errors import NotServingError, ServiceError
from service.images import PreparedImage, prepare_image
from service.log_limits import EventSummary
from service.memory import IdleTrimmer
from service.metrics import ServiceMetrics
from service.params import max_detections_for, resolve_classes, score_threshold_for
from service.repository import DirectoryCatalogue, ModelRepository, ModelVersion, repository_for
from service.settings import Settings
from service.thread_priority import compute_nice, lower_current_thread
from ssd_core.inference import Detections

logger = logging.getLogger(__name__)

# Where a request's time goes, in order (`DetectResult.stages`, metric
# `ssd_request_stage_seconds`, the Server-Timing header): decode (waiting for a decode worker,
# decoding and resizing the image), queue (the batcher: waiting for a batch and a free engine,
# padding), model (the engine's network), decoding (the in-graph decoder, then the request's
# boxes to pixels and its filters), serialisation (the protocol's answer; observed by each
# protocol).
STAGES = ("decode", "queue", "model", "decoding", "serialisation")


@dataclass(frozen=True)
class DetectParams:
    """Per-request options; None means the service default from `Settings`.

    `score_threshold` keeps scores above it (`ssd_core.decoder_config`), `max_detections` the
    best that many; both are checked against the model's decoder (`service.params`).
    `classes` holds class names or label ids as strings ("circle", "1"); empty keeps all.
    """

    score_threshold: float | None = None
    max_detections: int | None = None
    classes: Sequence[str] = ()


@dataclass(frozen=True)
class DetectResult:
    """Detections of one image (`ssd_core.inference.Detections`: boxes in its original
    pixels, sorted by score).

    `model_name` is the repository name; `model_version` the detector's version (file hash,
    `SSD_MODEL_VERSION`, or the repository version folder); `repository_version` the version
    in the repository ("1" for a single model file).
    """

    model_name: str
    model_version: str
    width: int
    height: int
    detections: Detections
    repository_version: str = "1"
    stages: dict[str, float] = field(default_factory=dict)  # `STAGES` -> seconds


class Runtime:
    """The model repository and one decode pool, shared by every protocol.

    Args:
        settings: the service settings (`SSD_MODEL_REPOSITORY`, `SSD_MODEL_PATH`, ...).
        loader: builds the only `Detector` to serve (blocking; run in a thread), named by its
            config. Default: the repository the settings name. Tests pass a small model here.
    """

    def __init__(self, settings: Settings, loader: Callable[[], Detector] | None = None) -> None:
        self.settings = settings
        self.metrics = ServiceMetrics()
        # Clients that went away: one summary line per second, never a line per request.
        self.abandoned = EventSummary(logger, "requests dropped: client went away")
        self.repository: ModelRepository = repository_for(settings, self.metrics, loader)
        self._decode_pool = ThreadPoolExecutor(
            settings.decode_workers,
            thread_name_prefix="decode",
            initializer=lower_current_thread,
            initargs=(compute_nice(settings.compute_nice),),
        )
        self._accepting = True
        self._in_flight = 0
        self._accepted = 0  # requests that entered the request path, ever
        self._trimmer = IdleTrimmer(
            activity=lambda: self._accepted + self.abandoned.total,
            in_flight=lambda: self._in_flight,
        )
        self._idle = asyncio.Event()
        self._idle.set()
        self._poller: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        """Every model that should be loaded is loaded and warmed up; not shutting down."""
        return self.repository.ready and self._accepting

    @property
    def detector(self) -> Detector | None:
        """The default model's serving detector (None before it is loaded)."""
        current = self._default_version()
        return None if current is None else current.detector

    @property
    def batcher(self) -> DynamicBatcher[ImageResult] | None:
        """The default model's serving batcher (None before it is loaded)."""
        current = self._default_version()
        return None if current is None else current.batcher

    def _default_version(self) -> ModelVersion | None:
        try:
            return self.repository.route(None)
        except ServiceError:
            return None

    async def start(self) -> None:
        """Load and warm up the repository's models off the event loop, then serve."""
        await self.repository.start()
        self._trimmer.start()
        period = self.settings.repository_poll_s
        if period > 0 and isinstance(self.repository.catalogue, DirectoryCatalogue):
            self._poller = asyncio.get_running_loop().create_task(
                self.repository.poll_forever(period), name="repository-poll"
            )
        for model in self.repository.loaded():
            logger.info("ready: serving %s version %s", model.name, model.version)

    def begin_shutdown(self) -> None:
        """Readiness false; new requests get `NotServingError`."""
        self._accepting = False
        logger.info("shutting down: refusing new requests, %d in flight", self._in_flight)

    async def drain(self) -> None:
        """Wait (up to `shutdown_grace_s`) for accepted requests, then stop the batcher."""
        self.begin_shutdown()
        try:
            await asyncio.wait_for(self._idle.wait(), self.settings.shutdown_grace_s)
        except TimeoutError:
            logger.warning("drain timed out with %d requests in flight", self._in_flight)
        self._trimmer.stop()
        if self._poller is not None:
            self._poller.cancel()
        await self.repository.close()
        self._decode_pool.shutdown(wait=False, cancel_futures=True)

    async def detect(
        self,
        data: bytes,
        params: DetectParams,
        timeout_s: float | None = None,
        *,
        paced: bool = False,
        model: str | None = None,
        version: str | None = None,
        target: ModelVersion | None = None,
    ) -> DetectResult:
        """Detect objects in one encoded image.

        Args:
            data: encoded image bytes; not referenced any more once decoded.
            params: per-request options.
            timeout_s: time left for the request; capped by `settings.request_timeout_s`.
            paced: an item of a paced stream: wait (until the deadline) for room in the queue
                instead of being refused when it is full.
            model: repository model name; None: `SSD_DEFAULT_MODEL`.
            version: repository version; None: the one serving now.
            target: a version held by `pinned()`: used instead of routing `model`/`version`.
        Raises:
            ServiceError subclasses (see `service.errors`), mapped to a status by the caller.
        """
        self._check_serving()
        # Routed once: a reload switching versions meanwhile leaves this request where it is.
        if target is None:
            target = self.repository.route(model, version)
        detector, batcher = target.detector, target.batcher
        score_threshold, max_detections, labels = self._resolve_params(params, detector)
        loop = asyncio.get_running_loop()
        timeout = self.settings.request_timeout_s
        deadline = loop.time() + (timeout if timeout_s is None else min(timeout, timeout_s))
        self._enter(target)
        try:
            # The queue slot is taken before decoding: a full service refuses in microseconds.
            async with batcher.admission(wait_until=deadline if paced else None) as admission:
                started = time.perf_counter()
                image = await self._decode(data, detector, deadline)
                del data  # the caller's bytes may be freed while the request waits for its batch
                decoded = time.perf_counter()
                result = await batcher.submit(
                    image.pixels, deadline, admission, BatchLimits(score_threshold, max_detections)
                )
                computed = time.perf_counter()
        finally:
            self._leave(target)
        detections = detector.predictor.to_detections(result.outputs, image.placement).filter(
            score_threshold=score_threshold, labels=labels, max_detections=max_detections
        )
        times = result.times
        stages = {
            "decode": decoded - started,
            "queue": max(computed - decoded - times.network_s - times.decoding_s, 0.0),
            "model": times.network_s,
            "decoding": times.decoding_s + time.perf_counter() - computed,
        }
        target.metrics.observe_stages(stages)
        return DetectResult(
            target.name,
            detector.version,
            image.width,
            image.height,
            detections,
            repository_version=target.version,
            stages=stages,
        )

    def check_room(self, model: str | None = None, version: str | None = None) -> None:
        """Refuse at once what `detect` would refuse on arrival: not serving, an unknown model,
        or no room in its queue. Called before an HTTP body is read, so that shedding load
        costs no body reading or parsing.

        Raises:
            NotServingError, ModelNotFoundError, OverloadedError.
        """
        self._check_serving()
        self.repository.route(model, version).batcher.check_room()

    def observe_serialisation(self, result: DetectResult, seconds: float) -> None:
        """Record how long the protocol took to write `result`'s answer (stage
        `serialisation`)."""
        view = self.metrics.for_model(result.model_name, result.repository_version)
        view.observe_stages({"serialisation": seconds})

    @contextlib.contextmanager
    def pinned(self, model: str | None, version: str | None = None) -> Iterator[ModelVersion]:
        """The version serving `model`/`version` now, held for the `with` block: pass it to
        `detect(target=...)` so that every image of a multi-image request runs on the same
        version, even if a reload switches versions meanwhile (the held one is released only
        after the block).

        Raises:
            NotServingError: still loading, or shutting down.
            ModelNotFoundError: no such model, or that version is not loaded.
        """
        self._check_serving()
        target = self.repository.route(model, version)
        target.enter()
        try:
            yield target
        finally:
            target.leave()

    def _check_serving(self) -> None:
        if not self.ready:
            raise NotServingError(
                "service is shutting down" if not self._accepting else "model is not loaded yet"
            )

    def model_labels(self, model: str | None) -> tuple[str, str]:
        """(name, version) metric labels of the version serving `model` now, else ("", "")."""
        try:
            target = self.repository.route(model)
        except ServiceError:
            return "", ""
        return target.name, target.version

    async def _decode(self, data: bytes, detector: Detector, deadline: float) -> PreparedImage:
        """`prepare_image` in the decode pool (a cancelled request's queued decode never runs,
        nor does one whose deadline, event-loop time, passed while it waited for a worker)."""
        loop = asyncio.get_running_loop()
        # The worker compares with time.monotonic(): move the deadline onto that clock.
        deadline_s = time.monotonic() + (deadline - loop.time())
        return await loop.run_in_executor(
            self._decode_pool,
            functools.partial(
                prepare_image,
                data,
                detector.predictor,
                max_bytes=self.settings.max_image_bytes,
                max_pixels=self.settings.max_image_pixels,
                max_decoded_bytes=self.settings.max_decoded_bytes,
                deadline_s=deadline_s,
            ),
        )

    def model_info(self, model: str | None = None) -> dict[str, Any]:
        """Name, version, classes, input size, the decoder (the limits of a request's score
        threshold and detection count), the engine running it and the full config of a served
        model."""
        if not self.repository.started:
            raise NotServingError("model is not loaded yet")
        target = self.repository.route(model)
        config = target.detector.config
        return {
            "name": target.name,
            "version": target.detector.version,
            "class_names": list(config.class_names),
            "input_height": config.image_size[0],
            "input_width": config.image_size[1],
            "decoder": target.detector.decoder_config.to_dict(),
            "engine": target.detector.engine,
            "config": config.to_dict(),
        }

    def _resolve_params(
        self, params: DetectParams, detector: Detector
    ) -> tuple[float, int, frozenset[int] | None]:
        """(score threshold, detection count, labels or None) of a request for `detector`."""
        decoder = detector.decoder_config
        return (
            score_threshold_for(params.score_threshold, self.settings.score_threshold, decoder),
            max_detections_for(params.max_detections, self.settings.max_detections, decoder),
            resolve_classes(params.classes, detector.config.label_names),
        )

    def _enter(self, target: ModelVersion) -> None:
        target.enter()
        self._in_flight += 1
        self._accepted += 1
        self.metrics.in_flight.set(self._in_flight)
        self._idle.clear()

    def _leave(self, target: ModelVersion) -> None:
        target.leave()
        self._in_flight -= 1
        self.metrics.in_flight.set(self._in_flight)
        if self._in_flight == 0:
            self._idle.set()
