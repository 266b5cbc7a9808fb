"""Requests beyond the served model's decoder are refused with the limit, over HTTP, gRPC and
the Open Inference Protocol (both transports): a score threshold below the decoder's (it never
returns those scores) and more detections than it keeps. Never a silent cap. Unset values take
the service defaults within those limits."""

from __future__ import annotations

import json

import grpc
import httpx
import numpy as np
import pytest

from service._generated import detector_pb2, detector_pb2_grpc
from tests.service.conftest import (
    ORACLE_DECODER,
    ServiceHarness,
    encode,
    make_settings,
    rectangle_image,
)

IMAGE = encode(rectangle_image((40, 20, 100, 80)))
OIP_MODEL = "ssd7"  # the oracle model's config name
# (parameters, the message naming the limit) for each limit and the range of a threshold.
REFUSED = [
    ({"score_threshold": 0.01}, "score_threshold must be >= 0.05"),
    ({"max_detections": ORACLE_DECODER.max_detections + 1}, "max_detections must be in 1..150"),
]


@pytest.fixture
def stub(service):
    with grpc.insecure_channel(service.grpc_target) as channel:
        yield detector_pb2_grpc.DetectorStub(channel)


def post(service, **params) -> httpx.Response:
    return httpx.post(
        f"{service.http_url}/detect",
        content=IMAGE,
        params=params,
        headers={"content-type": "image/png"},
        timeout=20,
    )


@pytest.mark.parametrize(("params", "message"), REFUSED)
def test_http_request_beyond_the_decoder_is_a_422_naming_the_limit(service, params, message):
    response = post(service, **params)
    assert response.status_code == 422
    assert message in response.json()["detail"]


@pytest.mark.parametrize(("params", "message"), REFUSED)
def test_grpc_request_beyond_the_decoder_is_invalid_argument_naming_the_limit(
    stub, params, message
):
    with pytest.raises(grpc.RpcError) as raised:
        stub.Detect(detector_pb2.DetectRequest(image=IMAGE, **params), timeout=20)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in raised.value.details()


def test_a_score_threshold_of_one_is_out_of_range_in_both_protocols(service, stub):
    response = post(service, score_threshold=1.0)
    assert response.status_code == 422 and "score_threshold" in response.json()["detail"]
    with pytest.raises(grpc.RpcError) as raised:
        stub.Detect(detector_pb2.DetectRequest(image=IMAGE, score_threshold=1.0), timeout=20)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "score_threshold must be in [0, 1)" in raised.value.details()


def test_the_decoder_limits_themselves_are_honoured(service, stub):
    limits = {"score_threshold": ORACLE_DECODER.score_threshold,
              "max_detections": ORACLE_DECODER.max_detections}  # fmt: skip
    response = post(service, **limits)
    assert response.status_code == 200
    assert [d["label"] for d in response.json()["detections"]] == ["circle", "ring"]
    # gRPC carries the threshold as a float32: 0.05 arrives as 0.0500000007, still allowed.
    reply = stub.Detect(detector_pb2.DetectRequest(image=IMAGE, **limits), timeout=20)
    assert [d.label for d in reply.detections] == ["circle", "ring"]


def test_the_model_describes_its_decoder_limits(service, stub):
    body = httpx.get(f"{service.http_url}/model", timeout=20).json()
    assert body["decoder"] == ORACLE_DECODER.to_dict()
    info = stub.GetModel(detector_pb2.GetModelRequest(), timeout=20)
    assert json.loads(info.decoder_json) == ORACLE_DECODER.to_dict()


def test_defaults_beyond_the_decoder_are_held_to_its_limits(oracle_detector):
    settings = make_settings(score_threshold=0.0, max_detections=1000)
    harness = ServiceHarness(settings, loader=lambda: oracle_detector).start()
    try:
        response = post(harness)
    finally:
        harness.stop()
    assert response.status_code == 200
    assert [d["label"] for d in response.json()["detections"]] == ["circle", "ring"]


@pytest.mark.parametrize(("params", "message"), REFUSED)
def test_oip_http_request_beyond_the_decoder_is_a_400_naming_the_limit(service, params, message):
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    tensor = httpclient.InferInput("IMAGE", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([IMAGE], dtype=object))
    client = httpclient.InferenceServerClient(service.http_url.removeprefix("http://"))
    try:
        with pytest.raises(InferenceServerException) as raised:
            client.infer(OIP_MODEL, [tensor], parameters=params)
    finally:
        client.close()
    assert raised.value.status() == "400"
    assert message in raised.value.message()


@pytest.mark.parametrize(("params", "message"), REFUSED)
def test_oip_grpc_request_beyond_the_decoder_is_invalid_argument_naming_the_limit(
    service, params, message
):
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    tensor = grpcclient.InferInput("IMAGE", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([IMAGE], dtype=object))
    client = grpcclient.InferenceServerClient(service.grpc_target)
    try:
        with pytest.raises(InferenceServerException) as raised:
            client.infer(OIP_MODEL, [tensor], parameters=params)
    finally:
        client.close()
    assert raised.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert message in raised.value.message()
