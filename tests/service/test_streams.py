"""Stream integrity: `answer_stream` on its own, then `StreamDetect` on a real gRPC server.

Every item read gets exactly one response, built from that item (its id, its image); failures
are per item; a stream that cannot be read ends with a non-OK status after the items read so
far are answered; a stream is paced by its window, never shed for its own burst.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service._generated import detector_pb2, detector_pb2_grpc
from service.errors import InvalidImageError, ServiceError
from service.streams import StreamReadError, answer_stream
from tests.service.conftest import (
    LABEL_OF_COLOUR,
    ServiceHarness,
    encode,
    make_settings,
    rectangle_image,
    wait_until,
)

INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 30))


async def items(values, *, fail_after: int | None = None):
    for index, value in enumerate(values):
        if fail_after is not None and index == fail_after:
            raise OSError("transport broke")
        yield value


async def collect(stream) -> list:
    return [response async for response in stream]


def error_of(item, error: ServiceError):
    return (item, "error", error.message)


async def double(item: int):
    await asyncio.sleep(0.001 * (item % 3))  # finish out of order
    if item == 7:
        raise InvalidImageError("seven is not an image")
    if item == 9:
        raise KeyError("a bug")
    return (item, "ok", 2 * item)


def test_every_item_gets_exactly_one_response_of_its_own_even_when_it_fails():
    responses = run(collect(answer_stream(items(range(20)), double, error_of, window=4)))
    by_item = {response[0]: response for response in responses}
    assert len(responses) == 20 and sorted(by_item) == list(range(20))
    assert by_item[7] == (7, "error", "seven is not an image")
    assert by_item[9] == (9, "error", "internal error answering this item")
    assert all(by_item[i] == (i, "ok", 2 * i) for i in range(20) if i not in (7, 9))


def test_the_stream_reads_no_further_than_its_window():
    async def scenario() -> tuple[int, list]:
        pulled = []
        release = asyncio.Event()

        async def source():
            for value in range(10):
                pulled.append(value)
                yield value

        async def held(item: int):
            await release.wait()
            return item

        stream = answer_stream(source(), held, error_of, window=3)
        first = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.05)  # the reader runs until the window is full
        pulled_while_held = len(pulled)
        release.set()
        rest = [await first, *[response async for response in stream]]
        return pulled_while_held, rest

    pulled_while_held, responses = run(scenario())
    assert pulled_while_held == 3
    assert sorted(responses) == list(range(10))


def test_a_read_failure_answers_the_items_read_then_raises():
    async def scenario() -> tuple[list, BaseException]:
        answered = []
        with pytest.raises(StreamReadError) as raised:
            async for response in answer_stream(items(range(10), fail_after=6), double, error_of):
                answered.append(response)
        return answered, raised.value

    answered, error = run(scenario())
    assert sorted(response[0] for response in answered) == list(range(6))
    assert isinstance(error.__cause__, OSError)


def test_window_must_be_positive():
    with pytest.raises(ValueError, match="window must be >= 1"):
        run(collect(answer_stream(items([1]), double, error_of, window=0)))


# --- StreamDetect on a real server --------------------------------------------------------


def distinct_scenes(count: int) -> list[tuple[tuple[int, int, int, int], str]]:
    """`count` different (pixel box, colour) pairs on the 192 x 128 test image, even-aligned so
    that the oracle's answer is exact after the 2x downscale."""
    boxes = [
        (x, y, x + w, y + h)
        for w, h in ((30, 30), (50, 20), (20, 46))
        for x in range(0, 192 - w, 6)
        for y in range(0, 128 - h, 6)
    ]
    scenes = list(itertools.product(boxes, LABEL_OF_COLOUR))
    if count > len(scenes):
        raise ValueError(f"at most {len(scenes)} distinct scenes, got {count}")
    return scenes[:count]


def expected_detection(scene) -> tuple:
    box, colour = scene
    return (*LABEL_OF_COLOUR[colour], *box)


def answer_of(response) -> tuple:
    [detection] = response.detections
    box = detection.box
    return (
        detection.class_id,
        detection.label,
        round(box.xmin),
        round(box.ymin),
        round(box.xmax),
        round(box.ymax),
    )


def start_service(oracle_detector, **overrides) -> ServiceHarness:
    settings = {"max_image_bytes": 200_000, "max_batch_delay_ms": 2, "grpc_stream_window": 8}
    return ServiceHarness(
        make_settings(**{**settings, **overrides}), loader=lambda: oracle_detector
    ).start()


@pytest.fixture(scope="module")
def stream_service(oracle_detector):
    """4 streams (window 8) and 8 unary calls fit in its 48-slot queue."""
    harness = start_service(oracle_detector, max_queue_size=48)
    yield harness
    harness.stop()


@pytest.fixture
def small_queue_service(oracle_detector):
    """An 8-slot queue: 4 streams with a window of 8 each want 32 slots."""
    harness = start_service(oracle_detector, max_queue_size=8)
    yield harness
    harness.stop()


def test_flood_of_streams_and_unary_calls_answers_every_image_with_its_own_result(
    stream_service,
):
    """Thousands of distinct images on 4 streams and concurrent unary calls, bad items mixed in:
    zero wrong, zero missing, each failure reported on its own item, every stream ends OK."""
    scenes = distinct_scenes(2000)
    images = {
        f"img-{i}": (scene, encode(rectangle_image(*scene))) for i, scene in enumerate(scenes)
    }
    bad = {
        "bad-image": detector_pb2.DetectRequest(request_id="bad-image", image=b"not an image"),
        "bad-class": detector_pb2.DetectRequest(
            request_id="bad-class", image=images["img-0"][1], classes=["dragon"]
        ),
        "too-large": detector_pb2.DetectRequest(request_id="too-large", image=b"\0" * 300_000),
        # str.isdigit accepts "²" and int() rejects it: once an item with no answer at all.
        "bad-digit": detector_pb2.DetectRequest(
            request_id="bad-digit", image=images["img-0"][1], classes=["²"]
        ),
    }
    ids = list(images)
    unary_ids, stream_ids = ids[:400], ids[400:]
    streams = [stream_ids[k::4] for k in range(4)]
    for k, name in enumerate(bad):  # one bad item in the middle of each stream
        streams[k].insert(len(streams[k]) // 2, name)

    def requests(stream):
        for rid in stream:
            yield bad.get(rid) or detector_pb2.DetectRequest(request_id=rid, image=images[rid][1])

    with grpc.insecure_channel(stream_service.grpc_target) as channel:
        stub = detector_pb2_grpc.DetectorStub(channel)
        with ThreadPoolExecutor(12) as pool:
            streamed = [
                pool.submit(lambda s: list(stub.StreamDetect(requests(s), timeout=120)), s)
                for s in streams
            ]
            unary = {
                rid: pool.submit(
                    stub.Detect,
                    detector_pb2.DetectRequest(request_id=rid, image=images[rid][1]),
                    timeout=120,
                )
                for rid in unary_ids
            }
            responses = [r for future in streamed for r in future.result()]
            responses += [future.result() for future in unary.values()]

    counts = {rid: 0 for rid in [*ids, *bad]}
    wrong = []
    for response in responses:
        counts[response.request_id] += 1
        if response.request_id in bad:
            continue
        assert not response.HasField("error"), response.error
        scene, _ = images[response.request_id]
        if answer_of(response) != expected_detection(scene):
            wrong.append((response.request_id, answer_of(response), scene))
    assert wrong == []
    assert [rid for rid, n in counts.items() if n != 1] == []  # none missing, none twice
    by_id = {r.request_id: r for r in responses}
    assert by_id["bad-image"].error.code == INVALID_ARGUMENT
    assert "unknown class" in by_id["bad-class"].error.message
    assert by_id["too-large"].error.code == INVALID_ARGUMENT
    assert "200000 bytes" in by_id["too-large"].error.message
    assert by_id["bad-digit"].error.code == INVALID_ARGUMENT


def test_streams_bursting_past_the_queue_are_paced_not_refused(small_queue_service):
    """4 streams x 150 items against an 8-slot queue: every item answered, none refused."""
    stream_service = small_queue_service
    payload = encode(rectangle_image((10, 10, 40, 40)))

    def one_stream(k: int) -> list:
        with grpc.insecure_channel(stream_service.grpc_target) as channel:
            stub = detector_pb2_grpc.DetectorStub(channel)
            requests = (
                detector_pb2.DetectRequest(request_id=f"{k}-{i}", image=payload) for i in range(150)
            )
            return list(stub.StreamDetect(requests, timeout=120))

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one_stream, range(4)))
    for k, responses in enumerate(results):
        assert sorted(r.request_id for r in responses) == sorted(f"{k}-{i}" for i in range(150))
        assert [r.error for r in responses if r.HasField("error")] == []


def raw_stream(target: str, messages: list[bytes], timeout: float = 30):
    """StreamDetect with pre-serialised messages (so one can be malformed).

    Returns:
        (responses received, final status code).
    """
    with grpc.insecure_channel(
        target, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
    ) as channel:
        call = channel.stream_stream(
            "/ssd.v1.Detector/StreamDetect",
            request_serializer=None,
            response_deserializer=detector_pb2.DetectResponse.FromString,
        )(iter(messages), timeout=timeout)
        responses = []
        with contextlib.suppress(grpc.RpcError):
            responses.extend(call)
        return responses, call.code()


def good_message(rid: str) -> bytes:
    image = encode(rectangle_image((0, 0, 30, 30)))
    return detector_pb2.DetectRequest(request_id=rid, image=image).SerializeToString()


def test_an_undecodable_message_ends_the_stream_invalid_argument_after_answering_the_rest(
    stream_service,
):
    before = [good_message(f"before-{i}") for i in range(5)]
    malformed = b"\x0a\xff\xff\xff\xff\x0f"  # field 1, length varint far past the end
    responses, code = raw_stream(
        stream_service.grpc_target, [*before, malformed, good_message("after")]
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert sorted(r.request_id for r in responses) == [f"before-{i}" for i in range(5)]
    assert all(len(r.detections) == 1 for r in responses)


def test_a_message_over_the_transport_limit_ends_the_stream_with_an_error_not_ok(
    stream_service,
):
    huge = detector_pb2.DetectRequest(request_id="huge", image=b"\0" * 2_000_000)
    responses, code = raw_stream(
        stream_service.grpc_target, [good_message("a"), huge.SerializeToString()]
    )
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "huge" not in {r.request_id for r in responses}


def test_a_unary_image_a_little_over_the_limit_is_invalid_argument(stream_service):
    with grpc.insecure_channel(stream_service.grpc_target) as channel:
        stub = detector_pb2_grpc.DetectorStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            stub.Detect(detector_pb2.DetectRequest(image=b"\0" * 250_000), timeout=20)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "200000 bytes" in raised.value.details()


def test_calls_beyond_the_in_flight_limit_are_refused_at_once(gated_service, gated_detector):
    service = gated_service(max_batch_size=1, grpc_max_in_flight=2)
    gated_detector.gate.clear()
    image = encode(rectangle_image((0, 0, 20, 20)))
    with grpc.insecure_channel(service.grpc_target) as channel:
        stub = detector_pb2_grpc.DetectorStub(channel)
        held = [
            stub.Detect.future(detector_pb2.DetectRequest(image=image), timeout=30)
            for _ in range(2)
        ]
        gated_detector.entered.wait(10)
        wait_until(lambda: service.runtime.batcher.queue_depth == 1)  # both calls in flight
        with pytest.raises(grpc.RpcError) as raised:
            stub.Detect(detector_pb2.DetectRequest(image=image), timeout=30)
        gated_detector.gate.set()
        assert all(len(f.result().detections) == 1 for f in held)
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "too many calls in flight (2)" in raised.value.details()


def test_connections_beyond_the_limit_are_closed_and_a_slot_frees_when_one_leaves(
    oracle_detector,
):
    harness = start_service(oracle_detector, grpc_max_connections=2)
    try:
        channels = [
            grpc.insecure_channel(
                harness.grpc_target, options=[("grpc.use_local_subchannel_pool", 1)]
            )
            for _ in range(3)
        ]
        stubs = [health_pb2_grpc.HealthStub(channel) for channel in channels]
        request = health_pb2.HealthCheckRequest()
        assert [s.Check(request, timeout=5).status for s in stubs[:2]] == [1, 1]  # SERVING
        with pytest.raises(grpc.RpcError) as refused:
            stubs[2].Check(request, timeout=2)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        channels[0].close()
        wait_until(lambda: _serving(stubs[2], request))
    finally:
        for channel in channels:
            channel.close()
        harness.stop()


def _serving(stub, request) -> bool:
    try:
        return stub.Check(request, timeout=1).status == 1
    except grpc.RpcError:
        return False
