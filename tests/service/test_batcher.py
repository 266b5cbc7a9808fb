"""The dynamic batcher on its own, with a NumPy `run_batch` whose answer is known per image."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable

import numpy as np
import pytest

from service.batcher import BatchLimits, DynamicBatcher, pad_batch, padded_batch_sizes
from service.errors import (
    DeadlineExceededError,
    InferenceFailedError,
    NotServingError,
    OverloadedError,
)


def marked(value: int) -> np.ndarray:
    """A 2x2 image whose every pixel is `value` (0 is reserved for padding)."""
    return np.full((2, 2, 3), value, dtype=np.uint8)


class Recorder:
    """run_batch: returns each image's mark; records the marks of every batch it saw."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.limits: list[BatchLimits] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, batch: np.ndarray, limits: BatchLimits) -> list[int]:
        self.entered.set()
        self.gate.wait(10)
        marks = [int(image[0, 0, 0]) for image in batch]
        self.batches.append(marks)
        self.limits.append(limits)
        if 99 in marks:
            raise ValueError("poisoned image")
        return marks


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 30))


async def submit_together(
    recorder: Recorder,
    marks: Iterable[int],
    *,
    max_batch_size: int,
    max_batch_delay_s: float,
    max_queue_size: int,
) -> list[int]:
    """Start a batcher over `recorder` and submit one `marked` image per mark at once.

    Returns:
        The results in submission order.
    """
    batcher = DynamicBatcher(
        recorder,
        max_batch_size=max_batch_size,
        max_batch_delay_s=max_batch_delay_s,
        max_queue_size=max_queue_size,
    )
    batcher.start()
    deadline = asyncio.get_running_loop().time() + 20
    return await asyncio.gather(*(batcher.submit(marked(m), deadline) for m in marks))


async def hold_one_request_in_compute(
    recorder: Recorder, max_queue_size: int
) -> tuple[DynamicBatcher[int], asyncio.Task[int]]:
    """Start a batch-size-1 batcher and submit mark 1, which `recorder` holds inside
    `run_batch` until its gate is set.

    Returns:
        (the batcher, the task of the held request).
    """
    recorder.gate.clear()
    batcher = DynamicBatcher(
        recorder, max_batch_size=1, max_batch_delay_s=0, max_queue_size=max_queue_size
    )
    batcher.start()
    deadline = asyncio.get_running_loop().time() + 20
    held = asyncio.create_task(batcher.submit(marked(1), deadline))
    await asyncio.to_thread(recorder.entered.wait, 10)
    return batcher, held


@pytest.mark.parametrize(
    ("max_batch_size", "expected"),
    [(1, (1,)), (2, (1, 2)), (6, (1, 2, 4, 6)), (8, (1, 2, 4, 8)), (16, (1, 2, 4, 8, 16))],
)
def test_padded_batch_sizes_are_powers_of_two_then_the_maximum(max_batch_size, expected):
    assert padded_batch_sizes(max_batch_size) == expected


def test_pad_batch_appends_zero_images_to_the_next_size():
    batch = pad_batch([marked(5), marked(6), marked(7)], (1, 2, 4, 8))
    assert batch.shape == (4, 2, 2, 3)
    assert [int(b[0, 0, 0]) for b in batch] == [5, 6, 7, 0]


def test_each_request_gets_its_own_result():
    recorder = Recorder()
    limits = {"max_batch_size": 4, "max_batch_delay_s": 0.01, "max_queue_size": 64}
    assert run(submit_together(recorder, range(1, 21), **limits)) == list(range(1, 21))
    assert sorted(m for b in recorder.batches for m in b if m) == list(range(1, 21))


def test_batch_closes_at_max_batch_size_without_waiting_for_the_delay():
    recorder = Recorder()
    # A one-hour delay: only reaching max_batch_size can close this batch.
    limits = {"max_batch_size": 4, "max_batch_delay_s": 3600, "max_queue_size": 8}
    assert run(submit_together(recorder, (1, 2, 3, 4), **limits)) == [1, 2, 3, 4]
    assert recorder.batches == [[1, 2, 3, 4]]


def test_batch_closes_after_the_delay_padded_to_the_next_size():
    recorder = Recorder()
    limits = {"max_batch_size": 8, "max_batch_delay_s": 0.05, "max_queue_size": 8}
    assert run(submit_together(recorder, (1, 2, 3), **limits)) == [1, 2, 3]
    assert recorder.batches == [[1, 2, 3, 0]]


def test_full_queue_raises_overloaded():
    recorder = Recorder()

    async def scenario():
        batcher, held = await hold_one_request_in_compute(recorder, max_queue_size=2)
        deadline = asyncio.get_running_loop().time() + 20
        queued = [asyncio.create_task(batcher.submit(marked(i), deadline)) for i in (2, 3)]
        await asyncio.sleep(0)
        with pytest.raises(OverloadedError, match="queue is full"):
            await batcher.submit(marked(4), deadline)
        recorder.gate.set()
        return await asyncio.gather(held, *queued)

    assert run(scenario()) == [1, 2, 3]


def test_expired_request_is_dropped_before_compute():
    recorder = Recorder()

    async def scenario():
        batcher, held = await hold_one_request_in_compute(recorder, max_queue_size=8)
        loop = asyncio.get_running_loop()
        with pytest.raises(DeadlineExceededError):
            await batcher.submit(marked(2), loop.time() + 0.05)
        recorder.gate.set()
        await held
        return await batcher.submit(marked(3), loop.time() + 20)

    assert run(scenario()) == 3
    assert recorder.batches == [[1], [3]]


def test_cancelled_request_is_dropped_before_compute():
    recorder = Recorder()

    async def scenario():
        batcher, held = await hold_one_request_in_compute(recorder, max_queue_size=8)
        deadline = asyncio.get_running_loop().time() + 20
        cancelled = asyncio.create_task(batcher.submit(marked(2), deadline))
        await asyncio.sleep(0.01)
        cancelled.cancel()
        recorder.gate.set()
        await held
        return await batcher.submit(marked(3), deadline)

    assert run(scenario()) == 3
    assert recorder.batches == [[1], [3]]


def test_failing_batch_fails_only_its_requests():
    recorder = Recorder()

    async def scenario():
        batcher = DynamicBatcher(
            recorder, max_batch_size=2, max_batch_delay_s=3600, max_queue_size=8
        )
        batcher.start()
        deadline = asyncio.get_running_loop().time() + 20
        first = await asyncio.gather(
            batcher.submit(marked(99), deadline),
            batcher.submit(marked(1), deadline),
            return_exceptions=True,
        )
        second = await asyncio.gather(
            batcher.submit(marked(2), deadline), batcher.submit(marked(3), deadline)
        )
        return first, second

    first, second = run(scenario())
    assert all(isinstance(r, InferenceFailedError) for r in first)
    assert "inference failed" in first[0].message
    assert "poisoned" not in first[0].message  # the exception text stays in the log
    assert second == [2, 3]


def test_close_finishes_queued_requests_then_refuses_new_ones():
    recorder = Recorder()

    async def scenario():
        batcher = DynamicBatcher(
            recorder, max_batch_size=8, max_batch_delay_s=3600, max_queue_size=8
        )
        batcher.start()
        deadline = asyncio.get_running_loop().time() + 20
        queued = [asyncio.create_task(batcher.submit(marked(i), deadline)) for i in (1, 2, 3)]
        await asyncio.sleep(0.01)
        await batcher.close(timeout_s=10)  # closes the hour-long batch early
        with pytest.raises(NotServingError, match="shutting down"):
            await batcher.submit(marked(4), deadline)
        return await asyncio.gather(*queued)

    assert run(scenario()) == [1, 2, 3]


@pytest.mark.parametrize(
    ("requests", "merged"),
    [
        ([BatchLimits(0.5, 10), BatchLimits(0.3, 20), BatchLimits(0.7, 5)], BatchLimits(0.3, 20)),
        ([BatchLimits(0.5, 10), BatchLimits(None, 3)], BatchLimits(None, 10)),
        ([BatchLimits(0.5, None), BatchLimits(0.4, 3)], BatchLimits(0.4, None)),
        ([BatchLimits()], BatchLimits()),
        ([], BatchLimits()),
    ],
)
def test_batch_limits_merge_to_the_lowest_threshold_and_the_largest_count(requests, merged):
    assert BatchLimits.merge(requests) == merged


def test_batch_runs_with_the_lowest_threshold_and_largest_count_of_its_requests():
    recorder = Recorder()

    async def scenario() -> list[int]:
        batcher = DynamicBatcher(
            recorder, max_batch_size=4, max_batch_delay_s=0.5, max_queue_size=8
        )
        batcher.start()
        deadline = asyncio.get_running_loop().time() + 20
        asks = [BatchLimits(0.5, 10), BatchLimits(0.2, 3), BatchLimits(0.9, 40)]
        return await asyncio.gather(
            *(batcher.submit(marked(i + 1), deadline, limits=a) for i, a in enumerate(asks))
        )

    assert run(scenario()) == [1, 2, 3]
    assert recorder.batches == [[1, 2, 3, 0]]
    assert recorder.limits == [BatchLimits(0.2, 40)]
