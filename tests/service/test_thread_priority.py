"""Compute threads run nicer than the event loop (`service.thread_priority`), read back from
the kernel with `os.getpriority` per thread."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import httpx
import pytest

from service.thread_priority import supported
from tests.service.conftest import encode, rectangle_image

pytestmark = pytest.mark.skipif(not supported(), reason="per-thread nice values are Linux's")


def nice_of(thread_id: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, thread_id)


def test_a_thread_lowers_itself_and_the_sweep_spares_the_loop_and_grpc_threads():
    """In a fresh interpreter (the sweep changes every thread of its process): a pool thread
    lowers itself; the sweep lowers a plain thread but neither the calling thread nor one
    named like grpc's network threads."""
    script = """
import os, threading, time
from service.thread_priority import compute_nice, lower_compute_threads, lower_current_thread
def nice(tid): return os.getpriority(os.PRIO_PROCESS, tid)
ids = {}
def worker(key, lower=0):
    if lower: lower_current_thread(compute_nice(lower))
    ids[key] = threading.get_native_id(); time.sleep(2)
threads = [threading.Thread(target=worker, args=("self", 3)),
           threading.Thread(target=worker, args=("plain",)),
           threading.Thread(target=worker, args=("grpc",), name="event_engine")]
for t in threads: t.start()
time.sleep(0.3)
with open(f"/proc/self/task/{ids['grpc']}/comm", "w") as comm: comm.write("event_engine")
before = nice(ids["self"])
lowered = lower_compute_threads(compute_nice(7), threading.get_native_id())
print(before, nice(ids["self"]), nice(ids["plain"]), nice(ids["grpc"]),
      nice(threading.get_native_id()), lowered >= 2)
"""
    base = os.getpriority(os.PRIO_PROCESS, 0)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    ).stdout.split()
    assert out == [str(min(base + 3, 19)), str(min(base + 7, 19)), str(min(base + 7, 19)),
                   str(base), str(base), "True"]  # fmt: skip


def test_the_batcher_and_decoder_threads_run_nicer_than_the_loop(service):
    answer = httpx.post(
        f"{service.http_url}/detect",
        content=encode(rectangle_image((0, 0, 20, 20))),
        headers={"content-type": "image/png"},
    )
    assert answer.status_code == 200
    base = nice_of(service._thread.native_id)  # the event loop's
    nicer = min(base + service.runtime.settings.compute_nice, 19)
    deadline = time.monotonic() + 5
    names = {"ssd-infer": [], "decode": []}
    while deadline > time.monotonic() and not all(names.values()):
        for thread in threading.enumerate():
            for prefix, found in names.items():
                if thread.name.startswith(prefix) and thread.native_id is not None:
                    found.append(nice_of(thread.native_id))
    assert names["ssd-infer"] and set(names["ssd-infer"]) == {nicer}
    assert names["decode"] and set(names["decode"]) == {nicer}
    assert nice_of(service._thread.native_id) == base
