"""`IdleTrimmer` trims after activity once the service is idle, never while it is busy."""

from __future__ import annotations

import asyncio

import pytest

from service import memory
from service.memory import IdleTrimmer, release_free_memory

pytestmark = pytest.mark.skipif(
    memory._MALLOC_TRIM is None, reason="the C library has no malloc_trim (not glibc)"
)


def test_release_free_memory_calls_malloc_trim():
    assert release_free_memory() is True


def run_trimmer(activity: list[int], in_flight: list[int], steps) -> int:
    """Run a trimmer (10 ms interval) while `steps` mutate the counters; the trims done."""

    async def scenario() -> int:
        trimmer = IdleTrimmer(lambda: activity[0], lambda: in_flight[0], interval_s=0.01)
        trimmer.start()
        await asyncio.sleep(0.02)  # the trimmer has taken its first look
        for step in steps:
            step()
            await asyncio.sleep(0.05)
        trimmer.stop()
        return trimmer.trims

    return asyncio.run(scenario())


def test_trims_once_after_activity_when_idle():
    activity, in_flight = [0], [0]
    trims = run_trimmer(activity, in_flight, [lambda: activity.__setitem__(0, 5), lambda: None])
    assert trims == 1  # one burst, then quiet: one trim, not one per interval


def test_never_trims_while_requests_are_in_flight_or_without_activity():
    activity, in_flight = [0], [3]

    def busy() -> None:
        activity[0] += 1

    assert run_trimmer(activity, in_flight, [busy, busy, busy]) == 0
    assert run_trimmer([0], [0], [lambda: None, lambda: None]) == 0


def test_light_steady_traffic_is_not_trimmed_between_requests():
    """A request every 5 ms against a 50 ms interval: no interval is quiet, so no trim (each
    would stall the allocator for tens of ms); one trim once the traffic stops."""

    async def scenario() -> tuple[int, int]:
        activity = [0]
        trimmer = IdleTrimmer(lambda: activity[0], lambda: 0, interval_s=0.05)
        trimmer.start()
        for _ in range(60):
            activity[0] += 1
            await asyncio.sleep(0.005)
        during = trimmer.trims
        await asyncio.sleep(0.2)
        trimmer.stop()
        return during, trimmer.trims

    assert asyncio.run(scenario()) == (0, 1)
