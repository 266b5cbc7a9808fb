"""Live reload through the model repository extension, under continuous load from several
clients of three protocols: version 2 loads beside version 1 and takes over, version 1 is
released once idle, a broken version 3 leaves version 2 serving; no request fails.

The repository holds real `.keras` files (Triton layout `DIR/<name>/<version>/model.keras`):
tiny SSD7 networks whose heads ignore the image and always find one class (version 1
"circle", version 2 "square"), so every answer shows which version computed it.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

import ssd_core
from tests.service.conftest import ServiceHarness, encode, make_settings, rectangle_image

MODEL = "shapes"
LABEL_OF_VERSION = {"1": "circle", "2": "square"}


def save_constant_model(path: Path, label: int) -> None:
    """An SSD7 whose every anchor scores `label` ~1.0 with its own box, whatever the image."""
    config = ssd_core.SSDConfig.preset("ssd7", image_size=(64, 96))
    model = ssd_core.build_model(config, mode="inference")
    classes = config.num_classes
    for layer in model.layers:
        if layer.name.endswith("_mbox_loc") or layer.name.endswith("_mbox_conf"):
            kernel, bias = layer.get_weights()
            bias = np.zeros_like(bias)
            if layer.name.endswith("_mbox_conf"):
                bias.reshape(-1, classes)[:, label] = 10.0  # (A*C,) -> (A, C): Caffe layout
            layer.set_weights([np.zeros_like(kernel), bias])
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)


class Client(threading.Thread):
    """Sends requests in a loop; records (started, version, labels) or the error."""

    def __init__(self, send) -> None:
        super().__init__(daemon=True)
        self.send = send
        self.answers: list[tuple[float, str, set[str]]] = []
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                version, labels = self.send()
            except Exception as error:  # every failure is a test failure, reported below
                self.errors.append(repr(error))
            else:
                self.answers.append((started, version, labels))


def oip_http_sender(url: str, image: bytes):
    client = httpclient.InferenceServerClient(url.removeprefix("http://"))
    tensor = httpclient.InferInput("IMAGE", [2], "BYTES")
    tensor.set_data_from_numpy(np.array([image, image], dtype=object))

    def send():
        result = client.infer(MODEL, [tensor], parameters={"max_detections": 5})
        labels = {label.decode() for label in result.as_numpy("LABELS").reshape(-1) if label}
        return result.get_response()["model_version"], labels

    return send


def oip_grpc_sender(target: str, image: bytes):
    client = grpcclient.InferenceServerClient(target)
    tensor = grpcclient.InferInput("IMAGE", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([image], dtype=object))

    def send():
        result = client.infer(MODEL, [tensor], parameters={"max_detections": 5})
        labels = {label.decode() for label in result.as_numpy("LABELS").reshape(-1) if label}
        return result.get_response().model_version, labels

    return send


def detect_sender(url: str, image: bytes):
    http = httpx.Client(base_url=url, timeout=60)

    def send():
        response = http.post(
            "/detect", content=image, params={"model": MODEL, "max_detections": 5},
            headers={"content-type": "image/png"},
        )  # fmt: skip
        response.raise_for_status()
        body = response.json()
        return body["model_version"], {d["label"] for d in body["detections"]}

    return send


def wait_for_answers(clients: list[Client], count: int, after: float = 0.0) -> None:
    end = time.monotonic() + 120
    while any(sum(a[0] >= after for a in c.answers) < count for c in clients):
        assert time.monotonic() < end, "clients got no answers"
        assert not any(c.errors for c in clients), [c.errors for c in clients]
        time.sleep(0.05)


@pytest.fixture
def repository(tmp_path):
    save_constant_model(tmp_path / MODEL / "1" / "model.keras", label=1)
    return tmp_path


def test_reload_under_load_loses_no_request_and_a_broken_version_keeps_the_old(repository):
    harness = ServiceHarness(
        make_settings(model_repository=repository, max_batch_size=4), loader=None
    ).start()
    triton = httpclient.InferenceServerClient(harness.http_url.removeprefix("http://"))
    image = encode(rectangle_image((40, 20, 100, 80)))
    clients = [
        Client(oip_http_sender(harness.http_url, image)),
        Client(oip_http_sender(harness.http_url, image)),
        Client(oip_grpc_sender(harness.grpc_target, image)),
        Client(detect_sender(harness.http_url, image)),
    ]
    try:
        for client in clients:
            client.start()
        wait_for_answers(clients, 3)

        save_constant_model(repository / MODEL / "2" / "model.keras", label=2)
        triton.load_model(MODEL)  # returns once version 2 is loaded, warm and serving
        switched = time.monotonic()
        wait_for_answers(clients, 3, after=switched)
        index = {row["version"]: row for row in triton.get_model_repository_index()}
        assert index["2"]["state"] == "READY"
        assert index["1"]["state"] in ("UNLOADING", "UNAVAILABLE")

        broken = repository / MODEL / "3" / "model.keras"
        broken.parent.mkdir()
        broken.write_bytes(b"not a keras file")
        with pytest.raises(InferenceServerException) as raised:
            triton.load_model(MODEL)
        assert raised.value.status() == "400" and "version 3" in raised.value.message()
        failed = time.monotonic()
        wait_for_answers(clients, 3, after=failed)
    finally:
        for client in clients:
            client.stop.set()
        for client in clients:
            client.join(timeout=60)
        index = {row["version"]: row for row in triton.get_model_repository_index()}
        harness.stop()

    assert [c.errors for c in clients] == [[], [], [], []]
    answers = [answer for client in clients for answer in client.answers]
    for _, version, labels in answers:
        assert labels == {LABEL_OF_VERSION[version]}, (version, labels)
    assert {version for _, version, _ in answers} == {"1", "2"}
    assert all(version == "2" for started, version, _ in answers if started >= switched)
    assert index["1"] == {"name": MODEL, "version": "1", "state": "UNAVAILABLE",
                          "reason": "unloaded"}  # fmt: skip
    assert index["2"]["state"] == "READY"
    assert index["3"]["state"] == "UNAVAILABLE" and index["3"]["reason"]


def test_unload_then_load_again(repository):
    harness = ServiceHarness(make_settings(model_repository=repository), loader=None).start()
    triton = httpclient.InferenceServerClient(harness.http_url.removeprefix("http://"))
    try:
        triton.unload_model(MODEL)
        assert not triton.is_model_ready(MODEL)
        assert triton.is_server_ready()  # an unloaded model is not waited for
        with pytest.raises(InferenceServerException) as raised:
            triton.get_model_metadata(MODEL)
        assert raised.value.status() == "404"
        triton.load_model(MODEL)
        assert triton.is_model_ready(MODEL)
        with pytest.raises(InferenceServerException) as raised:
            triton.load_model("no-such-model")
        assert raised.value.status() == "404"
        with pytest.raises(InferenceServerException) as raised:
            triton.load_model(MODEL, config='{"max_batch_size": 2}')
        assert raised.value.status() == "400" and "'config' is not supported" in str(raised.value)
    finally:
        harness.stop()
