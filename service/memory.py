"""Memory of a long-running service: the garbage collector's view of the loaded models, and
memory freed after a burst given back to the operating system.

`freeze_heap` keeps the cyclic garbage collector off the loaded models: a model is hundreds of
thousands of long-lived Python objects (Keras layers and variables, traced TF functions) that
every full (generation 2) collection would scan, holding the GIL for 150-200 ms on the face
model (measured under load on the 2-core VM): an event loop that answers nothing, not even a
503, meanwhile. `gc.freeze()` moves every object alive at that point into the permanent
generation, which collections skip.

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


def release_free_memory() -> bool:
    """Return free heap memory to the OS; False when the C library cannot."""
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True


class IdleTrimmer:
    """Trim once after requests were served, when a whole `interval_s` then passed without a
    new one and none is in flight.

    Args:
        activity: a counter that grows with every request (e.g. requests accepted).
        in_flight: requests being served now.
    """

    def __init__(
        self, activity: Callable[[], int], in_flight: Callable[[], int], interval_s: float = 2.0
    ) -> None:
        self._activity = activity
        self._in_flight = in_flight
        self.interval_s = interval_s
        self.trims = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None and _MALLOC_TRIM is not None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="idle-trim")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        seen = self._activity()
        served = False  # requests since the last trim
        while True:
            await asyncio.sleep(self.interval_s)
            now = self._activity()
            if now != seen:
                served = True  # not quiet for a whole interval yet
            elif served and self._in_flight() == 0:
                await asyncio.to_thread(release_free_memory)
                self.trims += 1
                served = False
            seen = now
