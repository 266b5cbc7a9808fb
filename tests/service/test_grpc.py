"""The gRPC API against a real grpc.aio server on an ephemeral port, over the oracle model."""

from __future__ import annotations

import json

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from service._generated import detector_pb2, detector_pb2_grpc
from tests.service.conftest import distinct_boxes, encode, rectangle_image


@pytest.fixture
def stub(service):
    with grpc.insecure_channel(service.grpc_target) as channel:
        yield detector_pb2_grpc.DetectorStub(channel)


def box_of(detection) -> tuple[float, float, float, float]:
    return (detection.box.xmin, detection.box.ymin, detection.box.xmax, detection.box.ymax)


def test_detect_returns_the_rectangle_in_original_pixels(stub):
    request = detector_pb2.DetectRequest(
        request_id="a", image=encode(rectangle_image((40, 20, 100, 80), "green"))
    )
    response = stub.Detect(request, timeout=20)
    assert response.request_id == "a"
    assert (response.image_width, response.image_height) == (192, 128)
    assert (response.model_name, response.model_version) == ("ssd7", "oracle-1")
    [detection] = response.detections
    assert (detection.label, detection.class_id) == ("square", 2)
    assert box_of(detection) == pytest.approx((40, 20, 100, 80), abs=0.5)


def test_detect_honours_score_threshold_and_classes(stub):
    request = detector_pb2.DetectRequest(
        image=encode(rectangle_image((40, 20, 100, 80))), score_threshold=0.1, classes=["ring"]
    )
    response = stub.Detect(request, timeout=20)
    assert [(d.label, round(d.score, 3)) for d in response.detections] == [("ring", 0.2)]


def test_stream_of_20_images_answers_each_request_id_with_its_own_box(stub):
    boxes = {f"req-{i}": box for i, box in enumerate(distinct_boxes(20))}
    requests = [
        detector_pb2.DetectRequest(request_id=rid, image=encode(rectangle_image(box)))
        for rid, box in boxes.items()
    ]
    responses = list(stub.StreamDetect(iter(requests), timeout=60))
    assert sorted(r.request_id for r in responses) == sorted(boxes)
    for response in responses:
        assert not response.HasField("error")
        [detection] = response.detections
        assert box_of(detection) == pytest.approx(boxes[response.request_id], abs=0.5)


def test_stream_reports_a_bad_image_in_its_response_and_goes_on(stub):
    requests = [
        detector_pb2.DetectRequest(request_id="bad", image=b"not an image"),
        detector_pb2.DetectRequest(
            request_id="good", image=encode(rectangle_image((0, 0, 60, 50)))
        ),
    ]
    responses = {r.request_id: r for r in stub.StreamDetect(iter(requests), timeout=20)}
    assert responses["bad"].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "not a supported image" in responses["bad"].error.message
    assert len(responses["good"].detections) == 1


@pytest.mark.parametrize(
    ("request_kwargs", "message"),
    [
        ({"image": b""}, "empty image"),
        ({"image": b"GIF89a not really"}, "not a supported image"),
        (
            {"image": encode(rectangle_image((0, 0, 8, 8))), "score_threshold": 1.5},
            "score_threshold",
        ),
        ({"image": encode(rectangle_image((0, 0, 8, 8))), "max_detections": 0}, "max_detections"),
        ({"image": encode(rectangle_image((0, 0, 8, 8))), "classes": ["dragon"]}, "unknown class"),
    ],
)
def test_detect_bad_input_is_invalid_argument(stub, request_kwargs, message):
    with pytest.raises(grpc.RpcError) as raised:
        stub.Detect(detector_pb2.DetectRequest(**request_kwargs), timeout=20)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in raised.value.details()


def test_get_model_describes_the_served_model(stub, tiny_config):
    info = stub.GetModel(detector_pb2.GetModelRequest(), timeout=20)
    assert (info.name, info.version) == ("ssd7", "oracle-1")
    assert list(info.class_names) == list(tiny_config.class_names)
    assert (info.input_height, info.input_width) == (64, 96)
    assert json.loads(info.config_json) == tiny_config.to_dict()


@pytest.mark.parametrize("service_name", ["", "ssd.v1.Detector"])
def test_health_reports_serving(service, service_name):
    with grpc.insecure_channel(service.grpc_target) as channel:
        response = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service_name), timeout=10
        )
    assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_detector_and_health(service):
    with grpc.insecure_channel(service.grpc_target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        [response] = list(stub.ServerReflectionInfo(iter([request]), timeout=10))
    names = {s.name for s in response.list_services_response.service}
    assert {"ssd.v1.Detector", "grpc.health.v1.Health"} <= names
