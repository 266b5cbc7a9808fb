"""Fixtures of the service tests: an oracle model with known output, a gated detector, and a
real in-process service (uvicorn + grpc.aio on ephemeral ports) in a background thread.

The oracle model follows the `ssd_core` inference contract but its answer is a known function
of the image: one detection whose box is the bounding box of the non-black pixels and whose
label is the dominant colour of those pixels (red -> 1 "circle", green -> 2 "square",
blue -> 3 "triangle"), score 0.9, plus a whole-image "ring" (label 5) at score 0.2. So a test
draws a coloured rectangle on black and knows the exact answer. Its decoder config declares
what such a decoder could return: scores above 0.05, at most `ORACLE_MAX_DETECTIONS`.
"""

from __future__ import annotations

import asyncio
import io
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from service.__main__ import HttpServer
from service.batcher import NO_LIMITS, BatchLimits
from service.detector import Detector, ImageResult
from service.grpc_server import build_server, set_serving
from service.http_app import create_app
from service.http_protocol import uvicorn_config
from service.runtime import Runtime
from service.settings import Settings
from ssd_core import DecoderConfig, SSDConfig
from ssd_core.inference import Predictor

INPUT_SIZE = (64, 96)  # (height, width) of the tiny test models
COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}
LABEL_OF_COLOUR = {"red": (1, "circle"), "green": (2, "square"), "blue": (3, "triangle")}
ORACLE_DECODER = DecoderConfig(score_threshold=0.05, max_detections=150)


class BrightRegionModel(keras.Model):
    """(B, H, W, 3) uint8 -> the `ssd_core` inference outputs described in the module docstring."""

    def __init__(self, config: SSDConfig) -> None:
        super().__init__(name=config.name)
        self._config = config
        self.decoder_config = ORACLE_DECODER

    @property
    def ssd_config(self) -> SSDConfig:
        return self._config

    def call(self, images: Any) -> dict[str, Any]:
        pixels = tf.cast(images, tf.float32)
        height, width = self._config.image_size
        mask = tf.reduce_max(pixels, axis=-1) > 0  # (B, H, W)
        rows, cols = tf.reduce_any(mask, axis=2), tf.reduce_any(mask, axis=1)  # (B, H), (B, W)
        ymin = tf.cast(tf.argmax(tf.cast(rows, tf.int32), axis=1), tf.float32) / height
        ymax = (
            1.0 - tf.cast(tf.argmax(tf.cast(rows[:, ::-1], tf.int32), axis=1), tf.float32) / height
        )
        xmin = tf.cast(tf.argmax(tf.cast(cols, tf.int32), axis=1), tf.float32) / width
        xmax = (
            1.0 - tf.cast(tf.argmax(tf.cast(cols[:, ::-1], tf.int32), axis=1), tf.float32) / width
        )
        colour_sum = tf.reduce_sum(pixels, axis=(1, 2))  # (B, 3)
        label = tf.cast(tf.argmax(colour_sum, axis=1), tf.int32) + 1
        found = tf.reduce_any(rows, axis=1)
        batch = tf.shape(images)[0]
        object_box = tf.stack([xmin, ymin, xmax, ymax], axis=1)
        whole_box = tf.tile(tf.constant([[0.0, 0.0, 1.0, 1.0]]), [batch, 1])
        return {
            "boxes": tf.stack([object_box, whole_box], axis=1),  # (B, 2, 4)
            "scores": tf.tile(tf.constant([[0.9, 0.2]]), [batch, 1]),
            "labels": tf.stack([label, tf.fill([batch], 5)], axis=1),
            "num_detections": tf.where(found, 2, 0),
        }


class GatedDetector:
    """Wraps a `Detector`; while `gate` is clear, forward passes block. Counts passes."""

    def __init__(self, detector: Detector) -> None:
        self.inner = detector
        self.predictor = detector.predictor
        self.config = detector.config
        self.decoder_config = detector.decoder_config
        self.name = detector.name
        self.version = detector.version
        self.input_size = detector.input_size
        self.engine = detector.engine
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.batches: list[int] = []
        self.limits: list[BatchLimits] = []
        self.fail_next = False

    def predict_batch(
        self, images: np.ndarray, limits: BatchLimits = NO_LIMITS
    ) -> list[ImageResult]:
        self.entered.set()
        self.gate.wait(timeout=30)
        self.batches.append(len(images))
        self.limits.append(limits)
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("injected failure")
        return self.inner.predict_batch(images, limits)

    def warm_up(self, batch_sizes: Any) -> None:
        self.inner.warm_up(batch_sizes)
        self.batches.clear()
        self.limits.clear()
        self.entered.clear()


def rectangle_image(
    box: tuple[int, int, int, int], colour: str = "red", size: tuple[int, int] = (128, 192)
) -> np.ndarray:
    """(H, W, 3) uint8 black image with a filled rectangle at pixel box (xmin, ymin, xmax, ymax),
    max exclusive. The default size is twice the model input, so boxes map back exactly."""
    image = np.zeros((*size, 3), dtype=np.uint8)
    xmin, ymin, xmax, ymax = box
    image[ymin:ymax, xmin:xmax] = COLOURS[colour]
    return image


def encode(image: np.ndarray, fmt: str = "PNG", **options: Any) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt, **options)
    return buffer.getvalue()


class ServiceHarness:
    """The real servers (HTTP and gRPC on ephemeral ports) over one `Runtime`, in a thread."""

    def __init__(self, settings: Settings, loader: Callable[[], Any]) -> None:
        self.settings = settings
        self.runtime = Runtime(settings, loader=loader)
        self.app = create_app(settings, self.runtime)
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.http_port = self._sock.getsockname()[1]
        self.http_url = f"http://127.0.0.1:{self.http_port}"
        self.grpc_target = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> ServiceHarness:
        self._thread.start()
        if not self._ready.wait(timeout=60) or self._error is not None:
            raise RuntimeError(f"service harness did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as error:  # surfaced by start()
            self._error = error
            self._ready.set()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        grpc_server, port, health = build_server(self.runtime, "127.0.0.1:0")
        self.grpc_target = f"127.0.0.1:{port}"
        await grpc_server.start()
        config = uvicorn_config(
            self.app,
            self.settings,
            log_level="warning",
            lifespan="on",
        )
        http_server = HttpServer(config)
        http_task = asyncio.create_task(http_server.serve(sockets=[self._sock]))
        await self.runtime.start()
        set_serving(health, True)
        while not http_server.started:
            await asyncio.sleep(0.01)
        self._ready.set()
        await self._stop.wait()
        await self.runtime.drain()
        await grpc_server.stop(grace=1)
        http_server.should_exit = True
        await http_task


def make_settings(**overrides: Any) -> Settings:
    """The in-process service tests' settings (compute threads not lowered: see below). The
    engine is `tf`: `auto` would convert and time every installed engine for each model file a
    test writes (tens of seconds each);
    `auto` and the other engines have their own tests (tests/ssd_core/engines/test_auto.py,
    tests/service/test_engines.py), and the subprocess tests run the default."""
    defaults: dict[str, Any] = {
        "engine": "tf",
        # In-process services share the test process: lowering "every thread but the loop's"
        # would lower the suite's own threads and every service process it starts later.
        # tests/service/test_thread_priority.py runs a service process with it on.
        "compute_nice": 0,
        "http_port": 0,
        "grpc_port": 0,
        "max_batch_size": 8,
        "max_batch_delay_ms": 20,
        "max_queue_size": 64,
        "request_timeout_s": 20,
        "shutdown_grace_s": 5,
    }
    return Settings(**{**defaults, **overrides})


@pytest.fixture(scope="session")
def tiny_config() -> SSDConfig:
    return SSDConfig.preset("ssd7", image_size=INPUT_SIZE)


@pytest.fixture(scope="session")
def oracle_detector(tiny_config: SSDConfig) -> Detector:
    return Detector(Predictor.from_model(BrightRegionModel(tiny_config)), version="oracle-1")


@pytest.fixture
def gated_detector(oracle_detector: Detector) -> GatedDetector:
    return GatedDetector(oracle_detector)


@pytest.fixture(scope="module")
def service(oracle_detector: Detector) -> Iterator[ServiceHarness]:
    """A shared service on the oracle model with settings for the behaviour tests."""
    harness = ServiceHarness(
        make_settings(max_image_bytes=300_000, max_image_pixels=4_000_000),
        loader=lambda: oracle_detector,
    ).start()
    yield harness
    harness.stop()


@pytest.fixture
def gated_service(gated_detector: GatedDetector) -> Iterator[Callable[..., ServiceHarness]]:
    """Factory: a service on a gated oracle detector with the given settings overrides."""
    harnesses: list[ServiceHarness] = []

    def start(**overrides: Any) -> ServiceHarness:
        harness = ServiceHarness(make_settings(**overrides), loader=lambda: gated_detector)
        harnesses.append(harness.start())
        return harness

    yield start
    gated_detector.gate.set()
    for harness in harnesses:
        harness.stop()


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll `condition` until it holds; fail the test if it does not within `timeout_s`."""
    end = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > end:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


def distinct_boxes(count: int) -> list[tuple[int, int, int, int]]:
    """`count` different even-aligned pixel boxes inside a 192 x 128 image."""
    if count > 20:
        raise ValueError(f"at most 20 distinct boxes, got {count}")
    return [(4 * i, 2 * i, 4 * i + 60, 2 * i + 50) for i in range(count)]


@pytest.fixture(scope="module")
def live_schema(service: ServiceHarness) -> Any:
    """The OpenAPI schema the running `service` publishes, for schemathesis."""
    import schemathesis

    return schemathesis.openapi.from_url(f"{service.http_url}/openapi.json")
