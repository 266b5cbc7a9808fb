"""The Open Inference Protocol over HTTP, driven by the unmodified `tritonclient.http` (and by
plain HTTP where a curl user would), against the real server over the oracle model."""

from __future__ import annotations

import base64
import json

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.service.conftest import distinct_boxes, encode, rectangle_image
from tests.service.test_load import metric_samples

MODEL = "ssd7"  # the oracle model's config name


@pytest.fixture
def client(service):
    triton = httpclient.InferenceServerClient(service.http_url.removeprefix("http://"))
    yield triton
    triton.close()


def image_input(images: list[bytes], *, binary: bool = True, shape=None) -> httpclient.InferInput:
    """IMAGE as tritonclient sends it; JSON elements must be strings, so JSON sends base64."""
    elements = images if binary else [base64.b64encode(image) for image in images]
    tensor = httpclient.InferInput("IMAGE", shape or [len(images)], "BYTES")
    tensor.set_data_from_numpy(
        np.array(elements, dtype=object).reshape(shape or [len(images)]), binary_data=binary
    )
    return tensor


def png(box, colour: str = "red") -> bytes:
    return encode(rectangle_image(box, colour))


def test_server_is_live_ready_and_lists_its_extensions(client):
    assert client.is_server_live() and client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata["name"] == "ssd-detection"
    assert {"binary_tensor_data", "model_repository", "model_configuration", "statistics"} <= set(
        metadata["extensions"]
    )


def test_model_metadata_declares_the_detection_contract(client):
    metadata = client.get_model_metadata(MODEL)
    assert (metadata["name"], metadata["versions"]) == (MODEL, ["1"])
    assert metadata["inputs"] == [{"name": "IMAGE", "datatype": "BYTES", "shape": [-1]}]
    assert [(o["name"], o["datatype"], o["shape"]) for o in metadata["outputs"]] == [
        ("BOXES", "FP32", [-1, -1, 4]),
        ("SCORES", "FP32", [-1, -1]),
        ("CLASSES", "INT32", [-1, -1]),
        ("LABELS", "BYTES", [-1, -1]),
        ("NUM_DETECTIONS", "INT32", [-1]),
    ]
    assert client.get_model_metadata(MODEL, model_version="1") == metadata


def test_model_readiness_by_name_and_version(client):
    assert client.is_model_ready(MODEL) and client.is_model_ready(MODEL, "1")
    assert not client.is_model_ready(MODEL, "2")
    assert not client.is_model_ready("no-such-model")


def test_model_config_is_tritons_configuration_json(client):
    config = client.get_model_config(MODEL)
    assert (config["name"], config["platform"], config["max_batch_size"]) == (
        MODEL, "tensorflow_keras", 8,
    )  # fmt: skip
    [image] = config["input"]
    assert (image["name"], image["data_type"], image["dims"]) == ("IMAGE", "TYPE_STRING", [1])
    assert image["reshape"] == {"shape": []}  # [B, 1] as [B]
    assert [o["name"] for o in config["output"]] == [
        "BOXES", "SCORES", "CLASSES", "LABELS", "NUM_DETECTIONS",
    ]  # fmt: skip
    batching = config["dynamic_batching"]
    assert batching["max_queue_delay_microseconds"] == 20_000  # the service's 20 ms
    assert batching["preferred_batch_size"] == [1, 2, 4, 8]
    assert batching["default_queue_policy"]["max_queue_size"] == 64
    parameters = config["parameters"]
    assert (parameters["engine"], parameters["precision"]) == (
        {"string_value": "tf"}, {"string_value": "fp32"},
    )  # fmt: skip


def test_infer_one_image_as_binary_gives_its_box_in_original_pixels(client):
    result = client.infer(MODEL, [image_input([png((40, 20, 100, 80), "green")])], request_id="one")
    assert result.get_response()["id"] == "one"
    assert result.get_response()["model_version"] == "1"
    assert result.as_numpy("NUM_DETECTIONS").tolist() == [1]
    boxes = result.as_numpy("BOXES")
    assert boxes.shape == (1, 100, 4)  # K = SSD_MAX_DETECTIONS
    assert boxes[0, 0] == pytest.approx([40, 20, 100, 80], abs=0.5)
    assert not boxes[0, 1:].any() and not result.as_numpy("SCORES")[0, 1:].any()
    assert result.as_numpy("SCORES")[0, 0] == pytest.approx(0.9)
    assert result.as_numpy("CLASSES")[0, 0] == 2
    assert result.as_numpy("LABELS")[0, :2].tolist() == [b"square", b""]


def test_infer_several_images_in_json_gives_each_its_own_box(client):
    boxes = distinct_boxes(5)
    outputs = [httpclient.InferRequestedOutput(name, binary_data=False)
               for name in ("BOXES", "NUM_DETECTIONS", "LABELS")]  # fmt: skip
    result = client.infer(
        MODEL,
        [image_input([png(box) for box in boxes], binary=False)],
        outputs=outputs,
        parameters={"max_detections": 2},
    )
    response = result.get_response()
    assert all("data" in output for output in response["outputs"])  # JSON, not binary
    assert result.as_numpy("NUM_DETECTIONS").tolist() == [1] * 5
    assert result.as_numpy("BOXES").shape == (5, 2, 4)
    for i, box in enumerate(boxes):
        assert result.as_numpy("BOXES")[i, 0] == pytest.approx(box, abs=0.5)
    assert result.as_numpy("SCORES") is None  # not asked for


def test_infer_accepts_images_shaped_b_by_1(client):
    images = [png((0, 0, 60, 50)), png((10, 10, 50, 40))]
    result = client.infer(MODEL, [image_input(images, shape=[2, 1])])
    assert result.as_numpy("NUM_DETECTIONS").tolist() == [1, 1]


def test_infer_parameters_filter_as_on_detect(client):
    image = [image_input([png((40, 20, 100, 80))])]
    low = client.infer(MODEL, image, parameters={"score_threshold": 0.1})
    assert low.as_numpy("LABELS")[0, :2].tolist() == [b"circle", b"ring"]
    rings = client.infer(MODEL, image, parameters={"score_threshold": 0.1, "classes": "ring"})
    assert rings.as_numpy("NUM_DETECTIONS").tolist() == [1]
    assert rings.as_numpy("SCORES")[0, 0] == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"score_treshold": 0.1}, "unknown parameter 'score_treshold'"),
        ({"score_threshold": 1.5}, "score_threshold"),
        ({"max_detections": 0}, "max_detections"),
        ({"classes": "dragon"}, "unknown class"),
    ],
)
def test_bad_parameters_are_400(client, parameters, message):
    with pytest.raises(InferenceServerException) as raised:
        client.infer(MODEL, [image_input([png((0, 0, 8, 8))])], parameters=parameters)
    assert raised.value.status() == "400"
    assert message in raised.value.message()


def test_corrupt_image_in_a_batch_fails_the_request_naming_it_and_the_server_goes_on(client):
    images = [png((0, 0, 60, 50)), b"\x89PNG\r\n\x1a\n truncated", png((10, 10, 50, 40))]
    with pytest.raises(InferenceServerException) as raised:
        client.infer(MODEL, [image_input(images)])
    assert raised.value.status() == "400"
    assert raised.value.message().startswith("IMAGE[1]: ")
    assert client.is_server_live()
    assert client.infer(MODEL, [image_input(images[:1])]).as_numpy("NUM_DETECTIONS")[0] == 1


def test_unknown_model_is_404(client):
    with pytest.raises(InferenceServerException) as raised:
        client.infer("no-such-model", [image_input([png((0, 0, 8, 8))])])
    assert raised.value.status() == "404"
    with pytest.raises(InferenceServerException) as raised:
        client.get_model_metadata("no-such-model")
    assert raised.value.status() == "404"


def test_statistics_count_requests_images_and_batches(client):
    before = client.get_inference_statistics(MODEL)["model_stats"][0]
    client.infer(MODEL, [image_input([png((0, 0, 60, 50)), png((10, 10, 50, 40))])])
    after = client.get_inference_statistics(MODEL)["model_stats"][0]
    assert (after["name"], after["version"]) == (MODEL, "1")
    assert after["inference_count"] - before["inference_count"] == 2
    success = after["inference_stats"]["success"]
    assert success["count"] - before["inference_stats"]["success"]["count"] == 1
    assert success["ns"] > before["inference_stats"]["success"]["ns"]
    assert (
        sum(b["compute_infer"]["count"] for b in after["batch_stats"]) == after["execution_count"]
    )
    every = client.get_inference_statistics()["model_stats"]
    assert [(s["name"], s["version"]) for s in every] == [(MODEL, "1")]


def test_repository_index_lists_the_served_model(client):
    assert client.get_model_repository_index() == [
        {"name": MODEL, "version": "1", "state": "READY", "reason": ""}
    ]


def test_gzip_request_body_is_inflated(client):
    result = client.infer(
        MODEL, [image_input([png((40, 20, 100, 80))])], request_compression_algorithm="gzip"
    )
    assert result.as_numpy("BOXES")[0, 0] == pytest.approx([40, 20, 100, 80], abs=0.5)


def test_raw_binary_request_is_one_image_with_binary_outputs(service):
    # curl -H 'Inference-Header-Content-Length: 0' --data-binary @image.png .../infer
    response = httpx.post(
        f"{service.http_url}/v2/models/{MODEL}/infer",
        content=png((40, 20, 100, 80)),
        headers={"Inference-Header-Content-Length": "0"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    length = int(response.headers["inference-header-content-length"])
    header = json.loads(response.content[:length])
    outputs = {o["name"]: o for o in header["outputs"]}
    assert outputs["BOXES"]["shape"] == [1, 100, 4]
    start = length  # BOXES comes first
    boxes = np.frombuffer(response.content[start : start + 1600], dtype="<f4").reshape(100, 4)
    assert boxes[0] == pytest.approx([40, 20, 100, 80], abs=0.5)


def test_plain_json_request_with_nested_data(service):
    body = {
        "id": "curl-1",
        "inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [1, 1],
                    "data": [[base64.b64encode(png((40, 20, 100, 80))).decode()]]}],
        "outputs": [{"name": "NUM_DETECTIONS"}, {"name": "LABELS"}],
        "parameters": {"max_detections": 1},
    }  # fmt: skip
    response = httpx.post(f"{service.http_url}/v2/models/{MODEL}/infer", json=body, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    answer = response.json()
    assert (answer["id"], answer["model_name"]) == ("curl-1", MODEL)
    assert answer["outputs"] == [
        {"name": "NUM_DETECTIONS", "datatype": "INT32", "shape": [1], "data": [1]},
        {"name": "LABELS", "datatype": "BYTES", "shape": [1, 1], "data": ["circle"]},
    ]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "does not parse"),
        (b'{"inputs": []}', 400, "exactly one input"),
        (b'{"inputs": [{"name": "INPUT0", "datatype": "BYTES", "shape": [1], "data": ["eA=="]}]}',
         400, "unknown input 'INPUT0'"),
        (b'{"inputs": [{"name": "IMAGE", "datatype": "FP32", "shape": [1], "data": [1.0]}]}',
         400, "expected BYTES"),
        (b'{"inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [2], "data": ["eA=="]}]}',
         400, "carries 1 elements"),
        (b'{"inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [1], "data": ["%%"]}]}',
         400, "IMAGE[0]: not base64"),
        (b'{"inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [1], "data": ["eA=="]}],'
         b' "outputs": [{"name": "MASKS"}]}', 400, "unknown output 'MASKS'"),
    ],
)  # fmt: skip
def test_malformed_requests_get_the_protocol_error_shape(service, body, status, message):
    response = httpx.post(f"{service.http_url}/v2/models/{MODEL}/infer", content=body, timeout=30)
    assert response.status_code == status
    assert message in response.json()["error"]


def test_binary_data_size_must_match_the_body(service):
    tensor = {"name": "IMAGE", "datatype": "BYTES", "shape": [1]}
    tensor["parameters"] = {"binary_data_size": 100}
    header = json.dumps({"inputs": [tensor]}).encode()
    response = httpx.post(
        f"{service.http_url}/v2/models/{MODEL}/infer",
        content=header + b"\x05\x00\x00\x00abc",
        headers={"Inference-Header-Content-Length": str(len(header))},
        timeout=30,
    )
    assert response.status_code == 400
    assert "binary_data_size 100" in response.json()["error"]


def test_body_over_the_request_limit_is_413_unread(service):
    limit = max(2 * 300_000, 300_000 + 1024 * 1024)  # the fixture's max_image_bytes
    response = httpx.post(
        f"{service.http_url}/v2/models/{MODEL}/infer", content=b"x" * (limit + 1), timeout=30
    )
    assert response.status_code == 413
    assert "over the limit" in response.json()["error"]


def test_refused_and_answered_requests_are_counted_under_oip_http(service, client):
    def count(status: str) -> float:
        key = ("ssd_requests_total", (("protocol", "oip-http"), ("status", status)))
        return metric_samples(service.http_url).get(key, 0.0)

    before = count("400"), count("404"), count("200")
    httpx.post(f"{service.http_url}/v2/models/{MODEL}/infer", content=b"{", timeout=30)
    # The model is routed before the body is read: an unknown one is 404 whatever the body.
    httpx.post(f"{service.http_url}/v2/models/nope/infer", content=b"{", timeout=30)
    client.infer(MODEL, [image_input([png((0, 0, 8, 8))])])
    with pytest.raises(InferenceServerException):
        client.infer("nope", [image_input([png((0, 0, 8, 8))])])
    after = count("400"), count("404"), count("200")
    assert [b - a for a, b in zip(before, after, strict=True)] == [1, 2, 1]


def test_only_the_json_part_of_a_body_counts_as_parsing_work():
    from service.oip_http_codec import json_bytes

    assert json_bytes(None, 5000) == 5000  # no header: the body is all JSON
    assert json_bytes("120", 80_000) == 120  # a JSON header, then binary tensor data
    assert json_bytes("0", 80_000) == 0  # a raw binary request
    # Headers parse_request refuses count the whole body (it says why when it parses).
    assert json_bytes("9999999", 80_000) == 80_000
    assert json_bytes("x1", 80_000) == 80_000
