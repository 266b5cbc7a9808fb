"""Every protocol is a translation of one request path: the same images give the same
detections through `/detect`, `ssd.v1.Detect`, OIP HTTP and OIP gRPC (the shapes SSD7 on
rendered scenes), and requests of all four protocols share one batch."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

import ssd_core
from service._generated import detector_pb2, detector_pb2_grpc
from service.detector import load_detector
from ssd_core.data.shapes import render_scene
from tests.service.conftest import (
    ServiceHarness,
    encode,
    make_settings,
    rectangle_image,
    wait_until,
)
from tests.service.test_load import metric_samples

Detections = list[tuple[str, float, tuple[float, float, float, float]]]


@pytest.fixture(scope="module")
def shapes_service():
    shapes = ssd_core.embedded_models()["shapes"]
    harness = ServiceHarness(make_settings(), loader=lambda: load_detector(shapes)).start()
    yield harness
    harness.stop()


def via_detect(harness: ServiceHarness, image: bytes) -> Detections:
    response = httpx.post(
        f"{harness.http_url}/detect", content=image, headers={"content-type": "image/png"},
        timeout=60,
    )  # fmt: skip
    response.raise_for_status()
    return [
        (d["label"], d["score"], tuple(d["box"].values())) for d in response.json()["detections"]
    ]


def via_grpc_detect(harness: ServiceHarness, image: bytes) -> Detections:
    with grpc.insecure_channel(harness.grpc_target) as channel:
        response = detector_pb2_grpc.DetectorStub(channel).Detect(
            detector_pb2.DetectRequest(image=image), timeout=60
        )
    return [
        (d.label, d.score, (d.box.xmin, d.box.ymin, d.box.xmax, d.box.ymax))
        for d in response.detections
    ]


def from_tensors(result, index: int = 0) -> Detections:
    count = int(result.as_numpy("NUM_DETECTIONS")[index])
    labels = result.as_numpy("LABELS")[index, :count]
    scores = result.as_numpy("SCORES")[index, :count]
    boxes = result.as_numpy("BOXES")[index, :count]
    return [
        (label.decode(), float(score), tuple(float(v) for v in box))
        for label, score, box in zip(labels, scores, boxes, strict=True)
    ]


def via_oip_http(harness: ServiceHarness, image: bytes) -> Detections:
    client = httpclient.InferenceServerClient(harness.http_url.removeprefix("http://"))
    tensor = httpclient.InferInput("IMAGE", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([image], dtype=object))
    return from_tensors(client.infer(harness.runtime.repository.default_name, [tensor]))


def via_oip_grpc(harness: ServiceHarness, image: bytes) -> Detections:
    client = grpcclient.InferenceServerClient(harness.grpc_target)
    tensor = grpcclient.InferInput("IMAGE", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([image], dtype=object))
    return from_tensors(client.infer(harness.runtime.repository.default_name, [tensor]))


PROTOCOLS = {"/detect": via_detect, "ssd.v1.Detect": via_grpc_detect,
             "OIP HTTP": via_oip_http, "OIP gRPC": via_oip_grpc}  # fmt: skip


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_same_image_same_detections_through_every_protocol(shapes_service, seed):
    scene = render_scene(np.random.default_rng(seed), empty_probability=0.0)
    image = encode(scene.image)
    answers = {name: send(shapes_service, image) for name, send in PROTOCOLS.items()}
    reference = answers["/detect"]
    assert reference, "the shapes model should find objects in a rendered scene"
    for name, detections in answers.items():
        assert [d[0] for d in detections] == [d[0] for d in reference], name
        assert np.allclose([d[1] for d in detections], [d[1] for d in reference], atol=1e-5)
        assert np.allclose([d[2] for d in detections], [d[2] for d in reference], atol=1e-3)


def test_requests_of_all_four_protocols_share_one_batch(gated_service, gated_detector):
    service = gated_service(max_batch_size=8, max_batch_delay_ms=50)
    image = encode(rectangle_image((40, 20, 100, 80)))
    gated_detector.gate.clear()
    with ThreadPoolExecutor(5) as pool:
        first = pool.submit(via_detect, service, image)
        gated_detector.entered.wait(10)  # the first batch holds the model; the rest queue up
        others = [pool.submit(send, service, image) for send in PROTOCOLS.values()]
        wait_until(lambda: service.runtime.batcher.queue_depth == 4)
        gated_detector.gate.set()
        answers = [first.result(), *(future.result() for future in others)]
    assert all(answer[0][0] == "circle" for answer in answers)
    assert gated_detector.batches == [1, 4]
    samples = metric_samples(service.http_url)
    assert samples[("ssd_batch_size_sum", ())] == 5
    assert samples[("ssd_batch_size_count", ())] == 2
    requests = {
        (dict(labels)["protocol"], dict(labels)["status"]): value
        for (name, labels), value in samples.items()
        if name == "ssd_requests_total"
    }
    assert requests == {("http", "200"): 2, ("grpc", "OK"): 1,
                        ("oip-http", "200"): 1, ("oip-grpc", "OK"): 1}  # fmt: skip
