"""The Open Inference Protocol over gRPC (`inference.GRPCInferenceService`, on the ssd.v1 port),
driven by the unmodified `tritonclient.grpc` and its own generated stubs, over the oracle."""

from __future__ import annotations

import queue

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests.service.conftest import distinct_boxes, encode, rectangle_image

MODEL = "ssd7"


@pytest.fixture
def client(service):
    triton = grpcclient.InferenceServerClient(service.grpc_target)
    yield triton
    triton.close()


def image_input(images: list[bytes], shape=None) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput("IMAGE", shape or [len(images)], "BYTES")
    tensor.set_data_from_numpy(np.array(images, dtype=object).reshape(shape or [len(images)]))
    return tensor


def png(box, colour: str = "red") -> bytes:
    return encode(rectangle_image(box, colour))


def test_server_live_ready_and_metadata(client):
    assert client.is_server_live() and client.is_server_ready()
    metadata = client.get_server_metadata(as_json=True)
    assert metadata["name"] == "ssd-detection"
    assert "model_repository" in metadata["extensions"]


def test_model_ready_and_metadata(client):
    assert client.is_model_ready(MODEL) and client.is_model_ready(MODEL, "1")
    assert not client.is_model_ready(MODEL, "7") and not client.is_model_ready("no-such-model")
    metadata = client.get_model_metadata(MODEL)
    assert list(metadata.versions) == ["1"]
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [
        ("IMAGE", "BYTES", [-1])
    ]
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.outputs][0] == (
        "BOXES", "FP32", [-1, -1, 4],
    )  # fmt: skip


def test_model_config_and_statistics(client):
    config = client.get_model_config(MODEL).config
    assert (config.name, config.max_batch_size, config.platform) == (MODEL, 8, "tensorflow_keras")
    assert config.HasField("dynamic_batching")
    assert [i.name for i in config.input] == ["IMAGE"]
    client.infer(MODEL, [image_input([png((0, 0, 60, 50))])])
    [stats] = client.get_inference_statistics(MODEL).model_stats
    assert (stats.name, stats.version) == (MODEL, "1")
    assert stats.inference_count >= 1 and stats.inference_stats.success.count >= 1


def test_infer_one_image_sent_as_raw_input_contents(client):
    result = client.infer(
        MODEL, [image_input([png((40, 20, 100, 80), "blue")])], request_id="r1",
        parameters={"max_detections": 3},
    )  # fmt: skip
    response = result.get_response()
    assert (response.id, response.model_name, response.model_version) == ("r1", MODEL, "1")
    assert result.as_numpy("BOXES").shape == (1, 3, 4)
    assert result.as_numpy("BOXES")[0, 0] == pytest.approx([40, 20, 100, 80], abs=0.5)
    assert result.as_numpy("LABELS").tolist() == [[b"triangle", b"", b""]]
    assert result.as_numpy("NUM_DETECTIONS").tolist() == [1]


def test_infer_several_images_with_outputs_selected(client):
    boxes = distinct_boxes(4)
    result = client.infer(
        MODEL,
        [image_input([png(box) for box in boxes], shape=[4, 1])],
        outputs=[grpcclient.InferRequestedOutput("BOXES")],
    )
    assert [o.name for o in result.get_response().outputs] == ["BOXES"]
    for i, box in enumerate(boxes):
        assert result.as_numpy("BOXES")[i, 0] == pytest.approx(box, abs=0.5)


def test_infer_accepts_bytes_contents(service):
    request = service_pb2.ModelInferRequest(model_name=MODEL, id="contents")
    tensor = request.inputs.add(name="IMAGE", datatype="BYTES", shape=[2])
    tensor.contents.bytes_contents.extend([png((0, 0, 60, 50)), png((10, 10, 50, 40))])
    with grpc.insecure_channel(service.grpc_target) as channel:
        response = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
            request, timeout=30
        )
    assert response.id == "contents"
    result = grpcclient.InferResult(response)
    assert result.as_numpy("NUM_DETECTIONS").tolist() == [1, 1]
    assert result.as_numpy("BOXES")[1, 0] == pytest.approx([10, 10, 50, 40], abs=0.5)


def test_stream_of_20_images_answers_each_id_with_its_own_box(client):
    boxes = {f"req-{i}": box for i, box in enumerate(distinct_boxes(20))}
    answers: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        for request_id, box in boxes.items():
            client.async_stream_infer(MODEL, [image_input([png(box)])], request_id=request_id)
        got = [answers.get(timeout=60) for _ in boxes]
    finally:
        client.stop_stream()
    assert all(error is None for _, error in got)
    by_id = {result.get_response().id: result for result, _ in got}
    assert sorted(by_id) == sorted(boxes)
    for request_id, result in by_id.items():
        assert result.as_numpy("BOXES")[0, 0] == pytest.approx(boxes[request_id], abs=0.5)


def test_stream_reports_a_corrupt_item_with_its_id_and_goes_on(client):
    answers: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        client.async_stream_infer(MODEL, [image_input([b"not an image"])], request_id="bad")
        client.async_stream_infer(MODEL, [image_input([png((0, 0, 60, 50))])], request_id="good")
        got = [answers.get(timeout=60) for _ in range(2)]
    finally:
        client.stop_stream()
    errors = [error for _, error in got if error is not None]
    results = [result for result, error in got if error is None]
    assert len(errors) == 1 and errors[0].message().startswith("[request id: bad] IMAGE[0]: ")
    assert [r.get_response().id for r in results] == ["good"]


def test_stream_error_response_carries_the_request_id(service):
    request = service_pb2.ModelInferRequest(model_name=MODEL, id="bad-2")
    request.inputs.add(name="IMAGE", datatype="BYTES", shape=[1]).contents.bytes_contents.append(
        b"GIF89a no"
    )
    with grpc.insecure_channel(service.grpc_target) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        [response] = list(stub.ModelStreamInfer(iter([request]), timeout=30))
    assert response.infer_response.id == "bad-2"
    assert "not a supported image" in response.error_message


def test_corrupt_image_in_a_batch_is_invalid_argument_naming_it(client):
    images = [png((0, 0, 60, 50)), png((10, 10, 50, 40)), b""]
    with pytest.raises(InferenceServerException) as raised:
        client.infer(MODEL, [image_input(images)])
    assert raised.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert raised.value.message().startswith("IMAGE[2]: empty image")
    assert client.is_server_live()
    assert client.infer(MODEL, [image_input(images[:2])]).as_numpy("NUM_DETECTIONS").tolist() == [
        1, 1,
    ]  # fmt: skip


def test_unknown_model_is_not_found(client):
    with pytest.raises(InferenceServerException) as raised:
        client.infer("no-such-model", [image_input([png((0, 0, 8, 8))])])
    assert raised.value.status() == "StatusCode.NOT_FOUND"


def test_rpcs_outside_the_implemented_extensions_are_unimplemented(client):
    with pytest.raises(InferenceServerException) as raised:
        client.get_system_shared_memory_status()
    assert raised.value.status() == "StatusCode.UNIMPLEMENTED"


def test_repository_index_rpc(client):
    [model] = client.get_model_repository_index().models
    assert (model.name, model.version, model.state) == (MODEL, "1", "READY")


def test_health_and_reflection_know_the_inference_service(service):
    name = "inference.GRPCInferenceService"
    with grpc.insecure_channel(service.grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=name), timeout=10
        )
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        requests = [
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol=name),
        ]
        listed, described = list(reflection.ServerReflectionInfo(iter(requests), timeout=10))
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert name in {s.name for s in listed.list_services_response.service}
    assert described.file_descriptor_response.file_descriptor_proto


def test_message_limit_follows_the_image_limit(client):
    # The fixture's SSD_MAX_IMAGE_BYTES is 300 000: messages up to 300 000 + 1 MiB reach the
    # service, which names the image limit; larger ones grpc refuses itself.
    over_image = b"\x89PNG" + bytes(300_100)
    with pytest.raises(InferenceServerException) as raised:
        client.infer(MODEL, [image_input([over_image])])
    assert raised.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "IMAGE[0]: image is over the limit of 300000 bytes" in raised.value.message()
    with pytest.raises(InferenceServerException) as raised:
        client.infer(MODEL, [image_input([over_image] * 5)])
    assert raised.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
