"""What both protocols share: the loaded detector, the batcher, the decode pool and the state.

`Runtime.detect` is the one request path (decode in the worker pool, batch, scale boxes); the
HTTP app and the gRPC servicer only translate their wire formats to and from it.
Lifecycle: `start()` loads and warms up the model, then `ready` turns true; `begin_shutdown()`
turns `ready` false and refuses new requests; `drain()` waits for accepted ones to finish.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from service.batcher import DynamicBatcher
from service.detector import (
    Detection,
    Detector,
    RawDetections,
    load_detector,
    to_pixel_detections,
)
from service.errors import InvalidParameterError, NotServingError
from service.images import DecodedImage, prepare_image
from service.log_limits import EventSummary
from service.memory import IdleTrimmer
from service.metrics import ServiceMetrics
from service.params import resolve_classes
from service.settings import Settings
from service.startup import run_in_daemon_thread

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetectParams:
    """Per-request options; None means the service default from `Settings`.

    `classes` holds class names or label ids as strings ("circle", "1"); empty keeps all.
    """

    score_threshold: float | None = None
    max_detections: int | None = None
    classes: Sequence[str] = ()


@dataclass(frozen=True)
class DetectResult:
    """Detections of one image, boxes in its original pixels, sorted by score."""

    model_name: str
    model_version: str
    width: int
    height: int
    detections: list[Detection]


class Runtime:
    """One model, one batcher and one decode pool, shared by every protocol.

    Args:
        settings: the service settings.
        loader: builds the `Detector` (blocking; run in a thread). Default: load
            `settings.model_path` or the embedded model. Tests pass a small model here.
    """

    def __init__(self, settings: Settings, loader: Callable[[], Detector] | None = None) -> None:
        self.settings = settings
        self.metrics = ServiceMetrics()
        # Clients that went away: one summary line per second, never a line per request.
        self.abandoned = EventSummary(logger, "requests dropped: client went away")
        self._loader = loader or (
            lambda: load_detector(settings.model_path, settings.model_version)
        )
        self.detector: Detector | None = None
        self.batcher: DynamicBatcher[RawDetections] | None = None
        self._decode_pool = ThreadPoolExecutor(settings.decode_workers, thread_name_prefix="decode")
        self._accepting = True
        self._ready = False
        self._in_flight = 0
        self._accepted = 0  # requests that entered the request path, ever
        self._trimmer = IdleTrimmer(
            activity=lambda: self._accepted + self.abandoned.total,
            in_flight=lambda: self._in_flight,
        )
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def ready(self) -> bool:
        """Model loaded, every padded batch size warmed up, not shutting down."""
        return self._ready and self._accepting

    async def start(self) -> None:
        """Load and warm up the model off the event loop, then start batching."""
        # Daemon threads: SIGTERM during a long load must not wait for it to finish.
        detector = await run_in_daemon_thread(self._loader)
        batcher = DynamicBatcher(
            detector.predict_batch,
            max_batch_size=self.settings.max_batch_size,
            max_batch_delay_s=self.settings.max_batch_delay_ms / 1000.0,
            max_queue_size=self.settings.max_queue_size,
            metrics=self.metrics,
        )
        await run_in_daemon_thread(lambda: detector.warm_up(batcher.batch_sizes))
        self.detector, self.batcher = detector, batcher
        batcher.start()
        self._trimmer.start()
        self._ready = True
        logger.info("ready: serving %s version %s", detector.name, detector.version)

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
        if self.batcher is not None:
            await self.batcher.close(timeout_s=1.0)
        self._decode_pool.shutdown(wait=False, cancel_futures=True)

    async def detect(
        self,
        data: bytes,
        params: DetectParams,
        timeout_s: float | None = None,
        *,
        paced: bool = False,
    ) -> DetectResult:
        """Detect objects in one encoded image.

        Args:
            data: encoded image bytes; not referenced any more once decoded.
            params: per-request options.
            timeout_s: time left for the request; capped by `settings.request_timeout_s`.
            paced: an item of a paced stream: wait (until the deadline) for room in the queue
                instead of being refused when it is full.
        Raises:
            ServiceError subclasses (see `service.errors`), mapped to a status by the caller.
        """
        if not self.ready or self.detector is None or self.batcher is None:
            raise NotServingError(
                "service is shutting down" if not self._accepting else "model is not loaded yet"
            )
        detector, batcher = self.detector, self.batcher
        score_threshold, max_detections, classes = self._resolve_params(params, detector)
        loop = asyncio.get_running_loop()
        timeout = self.settings.request_timeout_s
        deadline = loop.time() + (timeout if timeout_s is None else min(timeout, timeout_s))
        self._enter()
        try:
            # The queue slot is taken before decoding: a full service refuses in microseconds.
            async with batcher.admission(wait_until=deadline if paced else None) as admission:
                image = await self._decode(data, detector, deadline)
                del data  # the caller's bytes may be freed while the request waits for its batch
                raw = await batcher.submit(image.pixels, deadline, admission)
        finally:
            self._leave()
        detections = to_pixel_detections(
            raw,
            width=image.width,
            height=image.height,
            label_names=detector.config.label_names,
            score_threshold=score_threshold,
            max_detections=max_detections,
            classes=classes,
        )
        return DetectResult(detector.name, detector.version, image.width, image.height, detections)

    async def _decode(self, data: bytes, detector: Detector, deadline: float) -> DecodedImage:
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
                detector.input_size,
                max_bytes=self.settings.max_image_bytes,
                max_pixels=self.settings.max_image_pixels,
                max_decoded_bytes=self.settings.max_decoded_bytes,
                deadline_s=deadline_s,
            ),
        )

    def model_info(self) -> dict[str, Any]:
        """Name, version, classes, input size and the full config of the served model."""
        if self.detector is None:
            raise NotServingError("model is not loaded yet")
        config = self.detector.config
        return {
            "name": self.detector.name,
            "version": self.detector.version,
            "class_names": list(config.class_names),
            "input_height": config.image_size[0],
            "input_width": config.image_size[1],
            "config": config.to_dict(),
        }

    def _resolve_params(
        self, params: DetectParams, detector: Detector
    ) -> tuple[float, int, frozenset[int] | None]:
        score = self.settings.score_threshold
        if params.score_threshold is not None:
            score = params.score_threshold
        if not 0.0 <= score <= 1.0:
            raise InvalidParameterError(f"score_threshold must be in [0, 1], got {score}")
        count = (
            self.settings.max_detections if params.max_detections is None else params.max_detections
        )
        if count < 1:
            raise InvalidParameterError(f"max_detections must be >= 1, got {count}")
        return score, count, resolve_classes(params.classes, detector.config.label_names)

    def _enter(self) -> None:
        self._in_flight += 1
        self._accepted += 1
        self.metrics.in_flight.set(self._in_flight)
        self._idle.clear()

    def _leave(self) -> None:
        self._in_flight -= 1
        self.metrics.in_flight.set(self._in_flight)
        if self._in_flight == 0:
            self._idle.set()
