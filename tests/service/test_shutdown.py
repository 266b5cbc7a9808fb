"""SIGTERM under load: `python -m service` in a subprocess with a tiny SSD7 from `ssd_core`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

import ssd_core
from tests.service.conftest import INPUT_SIZE, encode

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def queue_depth(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        if family.name == "ssd_queue_depth":
            return family.samples[0].value
    raise AssertionError("no ssd_queue_depth metric")


@pytest.fixture(scope="module")
def tiny_model_path(tmp_path_factory) -> Path:
    config = ssd_core.SSDConfig.preset("ssd7", image_size=INPUT_SIZE)
    path = tmp_path_factory.mktemp("model") / "tiny_ssd7.keras"
    ssd_core.build_model(config, mode="inference").save(path)
    return path


def wait_ready(url: str, process: subprocess.Popen, timeout_s: float = 120) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if process.poll() is not None:
            raise AssertionError(f"service exited early with code {process.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("service did not become ready")


def test_sigterm_answers_every_accepted_request_refuses_new_ones_and_exits_0(tiny_model_path):
    http_port = free_port()
    url = f"http://127.0.0.1:{http_port}"
    env = {
        **os.environ,
        "SSD_MODEL_PATH": str(tiny_model_path),
        "SSD_HOST": "127.0.0.1",
        "SSD_HTTP_PORT": str(http_port),
        "SSD_GRPC_PORT": str(free_port()),
        # One batch holds all requests and waits 2 s to close: SIGTERM lands while they queue.
        "SSD_MAX_BATCH_SIZE": "16",
        "SSD_MAX_BATCH_DELAY_MS": "2000",
        "SSD_LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen([sys.executable, "-m", "service"], cwd=ROOT, env=env)
    try:
        wait_ready(url, process)
        image = encode(np.full((40, 60, 3), 128, np.uint8))
        with ThreadPoolExecutor(12) as pool:
            accepted = [
                pool.submit(
                    httpx.post,
                    f"{url}/detect",
                    content=image,
                    headers={"content-type": "image/png"},
                    timeout=30,
                )
                for _ in range(12)
            ]
            end = time.monotonic() + 30
            while queue_depth(url) < 12 and time.monotonic() < end:
                time.sleep(0.02)
            process.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            readiness = httpx.get(f"{url}/readyz", timeout=5)
            refused = httpx.post(
                f"{url}/detect", content=image, headers={"content-type": "image/png"}, timeout=5
            )
            statuses = [future.result().status_code for future in accepted]
        code = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert statuses == [200] * 12
    assert readiness.status_code == 503
    assert (refused.status_code, refused.json()) == (503, {"detail": "service is shutting down"})
    assert code == 0
