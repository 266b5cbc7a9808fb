"""Strict request parameters: every bad value is 422 / INVALID_ARGUMENT with a message, never a
500, UNKNOWN or exception text; malformed protobuf is INVALID_ARGUMENT."""

from __future__ import annotations

import grpc
import httpx
import pytest

from service._generated import detector_pb2, detector_pb2_grpc
from service.errors import InvalidParameterError
from service.grpc_server import max_message_bytes
from service.params import parse_label_id, resolve_classes, split_class_list
from tests.service.conftest import ServiceHarness, encode, make_settings, rectangle_image

LABELS = ("background", "circle", "square", "triangle", "star", "ring")
PNG = encode(rectangle_image((40, 20, 100, 80)))
# Unicode digits that str.isdigit() and int() accept, and an id int() refuses (> 4300 digits).
NON_ASCII_IDS = ["²", "٤", "４", "1²"]
HUGE_ID = "1" * 5000


@pytest.mark.parametrize(("text", "label"), [("1", 1), ("05", 5), ("123456789", 123456789)])
def test_parse_label_id_reads_ascii_digits(text, label):
    assert parse_label_id(text) == label


@pytest.mark.parametrize("text", [*NON_ASCII_IDS, HUGE_ID, "", "-1", "+1", "1.0", " 1", "1e3"])
def test_parse_label_id_refuses_anything_else(text):
    assert parse_label_id(text) is None


def test_resolve_classes_takes_names_and_ids():
    assert resolve_classes(["ring", " 2 ", "circle"], LABELS) == frozenset({5, 2, 1})
    assert resolve_classes([], LABELS) is None


@pytest.mark.parametrize("item", [*NON_ASCII_IDS, HUGE_ID, "0", "6", "background", "dragon"])
def test_resolve_classes_refuses_unknown_items_with_a_bounded_message(item):
    with pytest.raises(InvalidParameterError, match="unknown class") as raised:
        resolve_classes([item], LABELS)
    assert len(raised.value.message) < 500


def test_split_class_list_drops_empty_items():
    assert split_class_list(" ring, ,2,") == ("ring", "2")
    assert split_class_list(None) == ()


@pytest.mark.parametrize("classes", [*NON_ASCII_IDS, HUGE_ID, "0", "ring,9"])
def test_http_bad_class_id_is_422_with_a_json_message(service, classes):
    response = httpx.post(
        f"{service.http_url}/detect",
        params={"classes": classes},
        content=PNG,
        headers={"content-type": "image/png"},
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/json"
    assert "unknown class" in response.json()["detail"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"score_threshold": "abc"}, "score_threshold: "),
        ({"score_threshold": "nan"}, "score_threshold: "),
        ({"score_threshold": "inf"}, "score_threshold: "),
        ({"score_threshold": "-0.5"}, "score_threshold: "),
        ({"max_detections": "1e3"}, "max_detections: "),
        ({"max_detections": "0"}, "max_detections: "),
        ({"max_detections": "9" * 5000}, "max_detections: "),
    ],
)
def test_http_bad_numeric_parameter_is_422_with_a_string_detail(service, query, expected):
    response = httpx.post(
        f"{service.http_url}/detect",
        params=query,
        content=PNG,
        headers={"content-type": "image/png"},
    )
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail.startswith(expected), detail


def test_http_unknown_path_and_method_are_json_errors(service):
    missing = httpx.get(f"{service.http_url}/nope")
    assert (missing.status_code, missing.json()) == (404, {"detail": "Not Found"})
    wrong = httpx.get(f"{service.http_url}/detect")
    assert wrong.status_code == 405
    assert wrong.json() == {"detail": "Method Not Allowed"}
    assert wrong.headers["allow"] == "POST"


@pytest.fixture
def channel(service):
    with grpc.insecure_channel(
        service.grpc_target, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
    ) as channel:
        yield channel


@pytest.mark.parametrize("classes", [*NON_ASCII_IDS, HUGE_ID, "0"])
def test_grpc_bad_class_id_is_invalid_argument(channel, classes):
    stub = detector_pb2_grpc.DetectorStub(channel)
    with pytest.raises(grpc.RpcError) as raised:
        stub.Detect(detector_pb2.DetectRequest(image=PNG, classes=[classes]), timeout=20)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown class" in raised.value.details()


@pytest.mark.parametrize(
    "method",
    ["/ssd.v1.Detector/Detect", "/ssd.v1.Detector/GetModel", "/grpc.health.v1.Health/Check"],
)
def test_grpc_malformed_protobuf_is_invalid_argument(channel, method):
    # 0x12 = field 2, length-delimited; the declared length 0x7f runs past the end.
    call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    with pytest.raises(grpc.RpcError) as raised:
        call(b"\x12\x7fshort", timeout=10)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "malformed request message" in raised.value.details()


def test_grpc_malformed_message_in_a_stream_is_invalid_argument(channel):
    call = channel.stream_stream(
        "/ssd.v1.Detector/StreamDetect", request_serializer=None, response_deserializer=None
    )
    with pytest.raises(grpc.RpcError) as raised:
        list(call(iter([b"\x12\x7fshort"]), timeout=10))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_grpc_image_over_the_byte_limit_is_invalid_argument_naming_it(service, channel):
    limit = service.settings.max_image_bytes
    image = b"\x89PNG" + bytes(limit)  # over the limit, under the message bound
    assert len(image) < max_message_bytes(limit)
    stub = detector_pb2_grpc.DetectorStub(channel)
    with pytest.raises(grpc.RpcError) as raised:
        stub.Detect(detector_pb2.DetectRequest(image=image), timeout=20)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"limit of {limit} bytes" in raised.value.details()


def test_grpc_image_between_4_mib_and_the_limit_is_answered(oracle_detector):
    # grpc's default receive limit is 4 MiB; the service's follows SSD_MAX_IMAGE_BYTES.
    harness = ServiceHarness(
        make_settings(max_image_bytes=8 * 1024 * 1024), loader=lambda: oracle_detector
    ).start()
    try:
        image = encode(rectangle_image((100, 200, 700, 900), size=(1100, 1300)), "BMP")
        assert 4 * 1024 * 1024 < len(image) < 8 * 1024 * 1024
        with grpc.insecure_channel(
            harness.grpc_target, options=[("grpc.max_send_message_length", -1)]
        ) as channel:
            reply = detector_pb2_grpc.DetectorStub(channel).Detect(
                detector_pb2.DetectRequest(image=image), timeout=30
            )
    finally:
        harness.stop()
    [detection] = reply.detections
    assert (reply.image_width, reply.image_height) == (1300, 1100)
    assert detection.box.xmin == pytest.approx(100, abs=15)


@pytest.mark.parametrize(
    ("path", "body"),
    [("/nope", {"detail": "Not Found"}), ("/v2/nope", {"error": "Not Found"})],
)
def test_errors_under_v2_take_the_open_inference_protocol_shape(service, path, body):
    response = httpx.get(f"{service.http_url}{path}")
    assert (response.status_code, response.json()) == (404, body)
