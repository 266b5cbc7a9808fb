"""Memory of a long-running service: the garbage collector's view of the loaded models, and
memory freed after a burst given back to the operating system.

`freeze_heap` keeps the cyclic garbage collector off the loaded models: a model is hundreds of
thousands of long-lived Python objects (Keras layers and variables, traced TF functions) that
every full (generation 2) collection would scan, holding the GIL for 150-200 ms on the face
model (measured under load on the 2-core VM): an event loop that answers nothing, not even a
503, meanwhile. `gc.freeze()` moves every object alive at that point into the permanent
generation, which collections skip.

Full collections of everything else wait for a quiet moment: the collector's own trigger
(allocation counts) fired a 110 ms full collection over the leftovers of a connection flood
(56,000 objects of 6000 closed connections) in the middle of the next burst, a stall every
answer shared (measured). `IdleTrimmer` turns that trigger off while it runs and collects when
the service has gone quiet, or after `max_full_interval_s` of unbroken load at the latest, so
cyclic garbage is still reclaimed.

glibc's allocator keeps freed heap pages for reuse, so after a flood of requests (bodies,
decoded images, connection buffers) the resident size stays near its peak although the memory
is free. `malloc_trim(0)` returns it. `IdleTrimmer` calls it when the service has gone quiet
after serving requests: a whole `interval_s` without a new request and none in flight. Never on
a busy service, nor between the requests of light steady traffic: a trim holds the allocator's
locks for 40-70 ms on the face model's heap (measured), which every thread that allocates
meanwhile, the event loop included, waits out. On a C library without `malloc_trim` it does
nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)


def _load_malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return None
    return trim


_MALLOC_TRIM = _load_malloc_trim()


def freeze_heap() -> None:
    """Collect once, then exempt every surviving object from later collections (module
    docstring). Call it when the set of loaded models changes: after a load, and after a
    release, since frozen objects are unfrozen first so that the released version's
    reference cycles can be reclaimed. Blocks for one full collection (~0.2 s)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def allocation_activity() -> int:
    """How many generation-1 collections ran so far: it grows while the process allocates
    (a flood of connections does, without a single request)."""
    return int(gc.get_stats()[1]["collections"])


def release_free_memory() -> bool:
    """Return free heap memory to the OS; False when the C library cannot."""
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True


# The generation-2 threshold while an `IdleTrimmer` schedules full collections: never reached.
DEFERRED_FULL_THRESHOLD = 1_000_000_000


class IdleTrimmer:
    """Collect garbage (a full collection) and trim once after activity, when a whole
    `interval_s` then passed without any and no request is in flight; under unbroken load,
    collect (without trimming) every `max_full_interval_s`.

    While started, the collector's own full collections are off (module docstring); `stop`
    restores its thresholds.

    Args:
        activity: a counter that grows with every request, and with allocation
            (`allocation_activity`), e.g. requests accepted plus collections.
        in_flight: requests being served now.
    """

    def __init__(
        self,
        activity: Callable[[], int],
        in_flight: Callable[[], int],
        interval_s: float = 2.0,
        max_full_interval_s: float = 60.0,
    ) -> None:
        self._activity = activity
        self._in_flight = in_flight
        self.interval_s = interval_s
        self.max_full_interval_s = max_full_interval_s
        self.trims = 0
        self.full_collections = 0
        self._thresholds: tuple[int, int, int] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._thresholds = gc.get_threshold()
            gc.set_threshold(*self._thresholds[:2], DEFERRED_FULL_THRESHOLD)
            self._task = asyncio.get_running_loop().create_task(self._run(), name="idle-trim")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._thresholds is not None:
            gc.set_threshold(*self._thresholds)
            self._thresholds = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        seen = self._activity()
        active = False  # requests or allocation since the last collection
        last_full = loop.time()
        while True:
            await asyncio.sleep(self.interval_s)
            now = self._activity()
            if now != seen:
                active = True  # not quiet for a whole interval yet
            elif active and self._in_flight() == 0:
                await asyncio.to_thread(_collect_and_trim)
                self.trims += 1
                self.full_collections += 1
                active, last_full = False, loop.time()
            if loop.time() - last_full >= self.max_full_interval_s:
                await asyncio.to_thread(_collect)  # busy all along: reclaim cycles anyway
                self.full_collections += 1
                last_full = loop.time()
            seen = self._activity()


def _collect() -> None:
    gc.collect()


def _collect_and_trim() -> None:
    _collect()
    release_free_memory()
