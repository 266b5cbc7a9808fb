"""Compute threads run nicer than the event loop (`service.thread_priority`), read back from
the kernel with `os.getpriority` per thread."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from service.thread_priority import supported
from tests.service.conftest import encode, rectangle_image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

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


def thread_nices(pid: int) -> dict[int, tuple[str, int]]:
    """Native thread id -> (OS thread name, nice value) of every thread of process `pid`."""
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found[int(task.name)] = ((task / "comm").read_text().strip(), nice_of(int(task.name)))
        except (OSError, ProcessLookupError):  # ended meanwhile
            continue
    return found


def test_a_serving_process_runs_its_compute_threads_nicer_than_its_event_loop(tmp_path):
    """`python -m service` on the shapes model after one detection: its main thread (the event
    loop) keeps the process's nice value, grpc's network threads too, and the compute threads
    (engine pools, batcher, decoders: several) run `SSD_COMPUTE_NICE` steps nicer."""
    from service_process import ServiceProcess

    settings = {"model_path": ROOT / "ssd_core/assets/ssd7_shapes.keras", "engine": "tf",
                "compute_nice": 4}  # fmt: skip
    with ServiceProcess(settings, tmp_path / "service.log") as server:
        answer = httpx.post(
            f"http://{server.host}:{server.http_port}/detect",
            content=encode(rectangle_image((0, 0, 20, 20))),
            headers={"content-type": "image/png"},
            timeout=60,
        )
        assert answer.status_code == 200
        threads = thread_nices(server.process.pid)
    pid = server.process.pid
    base = threads[pid][1]
    network = [nice for name, nice in threads.values() if name.startswith(("grpc", "event_engine"))]
    lowered = [tid for tid, (_, nice) in threads.items() if nice == min(base + 4, 19)]
    assert network and set(network) == {base}
    assert pid not in lowered and len(lowered) >= 3
