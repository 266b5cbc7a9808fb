"""The event loop before the computation: compute threads run at a lower CPU priority.

The event loop answers health probes, refusals (503 / RESOURCE_EXHAUSTED), cancellations and
finished batches, each in a fraction of a millisecond; the model's threads (the engine's own
pools, the batcher's thread, the image decoders) do throughput work that takes every core it
is given. Under the kernel's fair scheduler the loop, when it wakes, shares a core with them
and its short jobs wait behind their time slices: under overload on two cores, refusals that
cost 0.3 ms of CPU took tens to hundreds of milliseconds. Linux keeps a nice value per thread,
and raising it is unprivileged: with the compute threads `SSD_COMPUTE_NICE` steps nicer, the
scheduler runs the loop first when both are ready, while the compute threads still get every
cycle the loop leaves (no throughput is lost on an otherwise idle host). In a container the
values weigh the container's own threads against each other.

`compute_nice` is the value, computed on the event loop's thread. Threads the service starts
for computation lower themselves (`lower_current_thread`, the thread pools' initialiser); the
libraries' own pools (TensorFlow, OpenVINO, ONNX Runtime), started by whichever thread first
needed them, are lowered by `lower_compute_threads` after every model load: every thread of the
process but the event loop's and grpc's network threads.
Elsewhere than Linux (no per-thread nice) both do nothing.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

MAX_NICE = 19
# grpc core's own threads (network polling, timers): they serve calls like the event loop.
NETWORK_THREAD_PREFIXES = ("grpc", "event_engine")
_TASKS = Path("/proc/self/task")


def supported() -> bool:
    """Whether threads have their own nice value here (Linux)."""
    return sys.platform == "linux"


def compute_nice(increment: int) -> int | None:
    """The nice value of compute threads: `increment` steps nicer than the calling thread (the
    event loop's), at most 19; None when `increment` is 0 or threads have no nice value."""
    if increment <= 0 or not supported():
        return None
    return min(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) + increment, MAX_NICE)


def lower_current_thread(nice: int | None) -> None:
    """Run the calling thread at `nice` (None: unchanged); a thread pool's initialiser."""
    if nice is not None:
        _lower(threading.get_native_id(), nice)


def lower_compute_threads(nice: int | None, loop_thread_id: int) -> int:
    """Run every thread of the process at `nice` but the event loop's (`loop_thread_id`, a
    native thread id) and grpc's network threads; none is raised.

    Returns:
        How many threads run at `nice` or nicer now (0 with `nice` None).
    """
    if nice is None:
        return 0
    lowered = 0
    for task in _TASKS.iterdir():
        thread_id = int(task.name)
        if thread_id != loop_thread_id and not _is_network_thread(task):
            lowered += _lower(thread_id, nice)
    return lowered


def _is_network_thread(task: Path) -> bool:
    try:
        name = (task / "comm").read_text().strip()
    except OSError:  # the thread has ended
        return False
    return name.startswith(NETWORK_THREAD_PREFIXES)


def _lower(thread_id: int, nice: int) -> int:
    """1 if the thread now runs at `nice` or nicer, else 0 (it has ended)."""
    try:
        if os.getpriority(os.PRIO_PROCESS, thread_id) < nice:
            os.setpriority(os.PRIO_PROCESS, thread_id, nice)
    except OSError:
        return 0
    return 1
