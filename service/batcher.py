"""The dynamic batcher: one bounded queue that turns single requests into batched passes.

Requests from every protocol `submit()` one model input each. A batch closes when it holds
`max_batch_size` requests or when its oldest request has waited `max_batch_delay_s`. Before
compute it drops requests whose client has gone (future cancelled) or whose deadline passed,
pads the rest with zero images to the next of a few fixed sizes (`padded_batch_sizes`), so the
compiled graph only ever sees those shapes, and runs `run_batch` in a single-thread executor
off the event loop. A batch that raises fails only its own requests.

Decoder limits: each request may carry a score threshold and a detection count
(`BatchLimits`); a batch runs with the lowest threshold and the largest count of its requests
(`BatchLimits.merge`), so the in-graph decoder does only the work the batch needs, and each
request filters its own from the batch's results after.

Admission: the queue has `max_queue_size` slots. A request takes its slot *before* it is
decoded (`admission()`), so a full service refuses a new request at once, without waiting
behind the decode pool, and decoding requests count against the bound. A new unary request
is refused when no slot is free; an item of a paced stream waits for one (until its
deadline). The slot is freed when the request's batch starts or when the request is dropped:
a request whose client went away is removed from the queue at once, never computed.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np

from service.errors import (
    DeadlineExceededError,
    InferenceFailedError,
    NotServingError,
    OverloadedError,
)
from service.metrics import ModelMetrics, ServiceMetrics
from service.thread_priority import lower_current_thread

logger = logging.getLogger(__name__)

R = TypeVar("R")
# The exception text stays in the server log: it may carry paths, shapes or internals.
_INFERENCE_FAILED = "inference failed for this batch; the server log has the cause"


@dataclass(frozen=True)
class BatchLimits:
    """What a request (or a batch) asks of the decoder: scores above `score_threshold`, at most
    `max_detections` per image; None: the decoder's own (its floor / its K)."""

    score_threshold: float | None = None
    max_detections: int | None = None

    @staticmethod
    def merge(limits: Sequence[BatchLimits]) -> BatchLimits:
        """The limits that serve every request of a batch: the lowest threshold, the largest
        count (None, the decoder's own, if any request leaves it open)."""
        thresholds = [t for t in (limit.score_threshold for limit in limits) if t is not None]
        counts = [c for c in (limit.max_detections for limit in limits) if c is not None]
        every = len(limits) > 0
        return BatchLimits(
            min(thresholds) if every and len(thresholds) == len(limits) else None,
            max(counts) if every and len(counts) == len(limits) else None,
        )


NO_LIMITS = BatchLimits()  # the decoder's own threshold and count
RunBatch = Callable[[np.ndarray, BatchLimits], Sequence[R]]


def padded_batch_sizes(max_batch_size: int) -> tuple[int, ...]:
    """Powers of two below `max_batch_size`, then `max_batch_size` itself: 6 -> (1, 2, 4, 6)."""
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
    sizes = []
    size = 1
    while size < max_batch_size:
        sizes.append(size)
        size *= 2
    sizes.append(max_batch_size)
    return tuple(sizes)


def pad_batch(images: Sequence[np.ndarray], sizes: Sequence[int]) -> np.ndarray:
    """Stack (H, W, 3) images and append zero images up to the smallest size in `sizes`.

    Returns:
        (P, H, W, 3) array, P = min(s for s in sizes if s >= len(images)).
    """
    target = next((s for s in sizes if s >= len(images)), None)
    if target is None:
        raise ValueError(f"batch of {len(images)} exceeds the largest padded size {max(sizes)}")
    batch = np.zeros((target, *images[0].shape), dtype=images[0].dtype)
    batch[: len(images)] = np.stack(images)
    return batch


class Admission:
    """A queue slot held by one request from admission until its batch starts."""

    __slots__ = ("held",)

    def __init__(self) -> None:
        self.held = True  # False once `submit` handed the slot to the queued request


@dataclass(eq=False)  # identity, not value: a queued request is removed by identity
class _Request(Generic[R]):
    image: np.ndarray
    deadline: float  # event-loop time (loop.time())
    enqueued: float  # event-loop time
    future: asyncio.Future[R] = field(repr=False)
    limits: BatchLimits = NO_LIMITS
    queued: bool = True  # in the queue and holding a slot


class DynamicBatcher(Generic[R]):
    """Collects requests into padded batches and resolves each request with its own result.

    Args:
        run_batch: (P, H, W, 3) padded batch and the batch's merged `BatchLimits` -> sequence
            of at least P per-image results. Called in a worker thread; may raise.
        max_batch_size: largest number of real requests per pass.
        max_batch_delay_s: longest time the oldest request waits for the batch to fill.
        max_queue_size: requests admitted (decoding or queued) beyond which a new request is
            refused with `OverloadedError`.
        metrics: where queue depth, queue wait, batch size and inference time go (one model
            version's view); None: an unlabelled view of a registry of its own.
        thread_nice: the nice value of the thread running `run_batch`
            (`service.thread_priority.compute_nice`); None: the creating thread's.
    """

    def __init__(
        self,
        run_batch: RunBatch[R],
        *,
        max_batch_size: int,
        max_batch_delay_s: float,
        max_queue_size: int,
        metrics: ModelMetrics | None = None,
        thread_nice: int | None = None,
    ) -> None:
        if max_queue_size < 1:
            raise ValueError(f"max_queue_size must be >= 1, got {max_queue_size}")
        self.run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.max_batch_delay_s = max_batch_delay_s
        self.max_queue_size = max_queue_size
        self.batch_sizes = padded_batch_sizes(max_batch_size)
        self.metrics = metrics or ServiceMetrics().for_model("", "")
        self._queue: collections.deque[_Request[R]] = collections.deque()
        self._slots = asyncio.Semaphore(max_queue_size)
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="ssd-infer",
            initializer=lower_current_thread,
            initargs=(thread_nice,),
        )
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._busy = False

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        """Start the batching loop on the running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="batcher")

    def check_room(self) -> None:
        """Raise `OverloadedError` unless a new request would get a queue slot now (none is
        free, or paced stream items are waiting first): lets a caller refuse before doing any
        work for the request, such as reading its body."""
        if self._slots.locked():
            raise OverloadedError(f"queue is full ({self.max_queue_size} requests waiting)")

    @asynccontextmanager
    async def admission(self, wait_until: float | None = None) -> AsyncIterator[Admission]:
        """Hold a queue slot while the request is prepared, then pass it on with `submit`.

        Args:
            wait_until: None: refuse at once when no slot is free (new unary requests).
                An event-loop time: wait for a slot until then (items of a paced stream).
        Raises:
            OverloadedError: no free slot and `wait_until` is None.
            DeadlineExceededError: no slot was freed before `wait_until`.
            NotServingError: the batcher is closing.
        """
        self._check_open()
        if wait_until is None:
            self.check_room()
            await self._slots.acquire()  # free: returns without suspending
        else:
            try:
                async with asyncio.timeout_at(wait_until):
                    await self._slots.acquire()
            except TimeoutError:
                raise DeadlineExceededError(
                    "request deadline exceeded while waiting for room in the queue"
                ) from None
        admission = Admission()
        try:
            yield admission
        finally:
            if admission.held:  # never queued (e.g. the image did not decode)
                admission.held = False
                self._slots.release()

    async def submit(
        self,
        image: np.ndarray,
        deadline: float,
        admission: Admission | None = None,
        limits: BatchLimits = NO_LIMITS,
    ) -> R:
        """Queue one (H, W, 3) model input and wait for its result.

        Args:
            deadline: event-loop time (`loop.time()`) after which the request is abandoned.
            admission: the slot taken by `admission()`; None takes one now (or refuses).
            limits: what this request needs of the decoder (its batch runs with what all of
                its requests need).
        Raises:
            OverloadedError: no admission given and no free slot.
            NotServingError: the batcher is closing.
            DeadlineExceededError: the deadline passed before the result was ready.
            InferenceFailedError: the forward pass of this request's batch raised.
        """
        if admission is None:
            async with self.admission() as taken:
                return await self.submit(image, deadline, taken, limits)
        if not admission.held:
            raise ValueError("this admission was already used for another request")
        self._check_open()
        loop = asyncio.get_running_loop()
        now = loop.time()
        request = _Request(
            image=image,
            deadline=deadline,
            enqueued=now,
            future=loop.create_future(),
            limits=limits,
        )
        admission.held = False
        self._queue.append(request)
        request.future.add_done_callback(lambda _: self._forget_if_dropped(request))
        self.metrics.queue_depth.set(len(self._queue))
        self._wakeup.set()
        try:
            # wait_for cancels the future on timeout or when the caller is cancelled; the
            # done callback then takes the request out of the queue, freeing its slot.
            return await asyncio.wait_for(request.future, timeout=max(deadline - now, 0.0))
        except TimeoutError:
            self.metrics.dropped.labels(reason="deadline").inc()
            raise DeadlineExceededError(
                "request deadline exceeded before inference finished"
            ) from None
        except asyncio.CancelledError:
            self.metrics.dropped.labels(reason="cancelled").inc()
            raise

    def _check_open(self) -> None:
        if self._closing:
            raise NotServingError("service is shutting down")

    def _forget_if_dropped(self, request: _Request[R]) -> None:
        """Done callback: a request dropped while queued leaves the queue and frees its slot."""
        if request.queued and request.future.cancelled():
            self._queue.remove(request)
            self._release(request)
            self.metrics.queue_depth.set(len(self._queue))

    def _release(self, request: _Request[R]) -> None:
        request.queued = False
        self._slots.release()

    async def close(self, timeout_s: float | None = None) -> None:
        """Refuse new requests, finish the queued and running ones, then stop the loop."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
            except TimeoutError:
                logger.warning("batcher drain timed out with %d queued", len(self._queue))
                self._task.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
            await self._wait_until_full_or_due(loop)
            batch = [
                self._queue.popleft() for _ in range(min(self.max_batch_size, len(self._queue)))
            ]
            for request in batch:
                self._release(request)
            self.metrics.queue_depth.set(len(self._queue))
            live = self._drop_abandoned(batch, loop.time())
            if live:
                await self._compute(live, loop)

    async def _wait_until_full_or_due(self, loop: asyncio.AbstractEventLoop) -> None:
        close_at = self._queue[0].enqueued + self.max_batch_delay_s
        while len(self._queue) < self.max_batch_size and not self._closing:
            remaining = close_at - loop.time()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return

    def _drop_abandoned(self, batch: list[_Request[R]], now: float) -> list[_Request[R]]:
        live = []
        for request in batch:
            if request.future.done():  # cancelled by its client or timed out in submit()
                continue
            if now >= request.deadline:
                request.future.set_exception(
                    DeadlineExceededError("request deadline exceeded while queued")
                )
                continue
            self.metrics.queue_wait.observe(now - request.enqueued)
            live.append(request)
        return live

    async def _compute(self, batch: list[_Request[R]], loop: asyncio.AbstractEventLoop) -> None:
        padded = pad_batch([r.image for r in batch], self.batch_sizes)
        limits = BatchLimits.merge([r.limits for r in batch])
        started = time.perf_counter()
        try:
            results = await loop.run_in_executor(self._executor, self.run_batch, padded, limits)
            if len(results) < len(batch):
                raise RuntimeError(f"run_batch returned {len(results)} results for {len(batch)}")
        except Exception:  # a failing batch fails its requests, never the loop
            logger.exception("forward pass of a batch of %d failed", len(batch))
            for request in batch:
                _resolve(request.future, error=InferenceFailedError(_INFERENCE_FAILED))
            return
        finally:
            elapsed_s = time.perf_counter() - started
            self.metrics.inference_time.observe(elapsed_s)
        self.metrics.observe_batch(len(batch), elapsed_s)
        for request, result in zip(batch, results, strict=False):
            _resolve(request.future, result=result)


def _resolve(
    future: asyncio.Future[Any], *, result: Any = None, error: Exception | None = None
) -> None:
    if future.done():  # the client gave up while the batch was running
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
