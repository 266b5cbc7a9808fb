"""The gRPC API (grpc.aio): `ssd.v1.Detector`, the Open Inference Protocol's
`inference.GRPCInferenceService` (`service.oip_grpc`), `grpc.health.v1` health and reflection.

The servicer translates protobuf messages to and from `Runtime.detect`; status codes come from
`service.errors`. `StreamDetect` runs through `service.streams.answer_stream`: the items of one
stream are handled concurrently, at most `SSD_GRPC_STREAM_WINDOW` at a time (the next is read
only when one is answered, so HTTP/2 flow control paces a fast client), and answered in
completion order, each response carrying its own item's `request_id` and result or error. A
stream whose next message cannot be read ends with a non-OK status once the items read before
it are answered.

Limits: messages up to `max_message_bytes`, `SSD_GRPC_MAX_CONNECTIONS` connections,
`SSD_GRPC_MAX_STREAMS_PER_CONNECTION` concurrent calls per connection, and
`SSD_GRPC_MAX_IN_FLIGHT` detection calls at once, above which a new call gets
RESOURCE_EXHAUSTED at once (health and reflection stay answered).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
from google.protobuf import descriptor_pool
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

from service._codegen import ensure_generated

ensure_generated()

from service import oip_grpc  # noqa: E402
from service._generated import (  # noqa: E402
    detector_pb2,
    detector_pb2_grpc,
    grpc_service_pb2,
    model_config_pb2,
)
from service.errors import ServiceError  # noqa: E402
from service.grpc_guard import CallLimit, GuardInterceptor  # noqa: E402
from service.images import max_message_bytes  # noqa: E402
from service.runtime import DetectParams, DetectResult, Runtime  # noqa: E402
from service.security import grpc_server_credentials  # noqa: E402
from service.settings import Settings  # noqa: E402
from service.streams import serve_stream_call  # noqa: E402

logger = logging.getLogger(__name__)

SERVICE_NAME = detector_pb2.DESCRIPTOR.services_by_name["Detector"].full_name  # "ssd.v1.Detector"
# Calls beyond SSD_GRPC_MAX_IN_FLIGHT that gRPC itself still accepts: health checks and
# reflection, and detection calls that the servicer then refuses cheaply.
_SPARE_RPCS = 64
_HANDSHAKE_TIMEOUT_MS = 10_000


class DetectorServicer(detector_pb2_grpc.DetectorServicer):
    """`ssd.v1.Detector` over a shared `Runtime`."""

    def __init__(self, runtime: Runtime, calls: CallLimit | None = None) -> None:
        self.runtime = runtime
        # Detection calls being served, shared with the OIP servicer.
        self.calls = calls or CallLimit(runtime.settings.grpc_max_in_flight)

    async def Detect(  # noqa: N802 - name fixed by the proto
        self, request: detector_pb2.DetectRequest, context: grpc.aio.ServicerContext
    ) -> detector_pb2.DetectResponse:
        try:
            with self._call_slot():
                result = await self._observed_detect(request, context)
        except ServiceError as error:
            await context.abort(error.grpc_code, error.message)
        return self._answer(request.request_id, result)

    def _answer(self, request_id: str, result: DetectResult) -> detector_pb2.DetectResponse:
        """The response message of `result`, its building time recorded (stage
        `serialisation`; grpc's own encoding of the message is not included)."""
        started = time.perf_counter()
        response = _to_response(request_id, result)
        self.runtime.observe_serialisation(result, time.perf_counter() - started)
        return response

    async def StreamDetect(  # noqa: N802
        self,
        request_iterator: AsyncIterator[detector_pb2.DetectRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[detector_pb2.DetectResponse]:
        async for response in serve_stream_call(
            request_iterator,
            lambda request: self._answer_item(request, context),
            _error_response,
            window=self.runtime.settings.grpc_stream_window,
            context=context,
            call_slot=self._call_slot,
        ):
            yield response

    async def GetModel(  # noqa: N802
        self, request: detector_pb2.GetModelRequest, context: grpc.aio.ServicerContext
    ) -> detector_pb2.ModelInfo:
        try:
            info = self.runtime.model_info(request.model or None)
        except ServiceError as error:
            await context.abort(error.grpc_code, error.message)
        return detector_pb2.ModelInfo(
            name=info["name"],
            version=info["version"],
            input_height=info["input_height"],
            input_width=info["input_width"],
            class_names=info["class_names"],
            decoder_json=json.dumps(info["decoder"]),
            engine_json=json.dumps(info["engine"]),
            # Empty when SSD_EXPOSE_MODEL_CONFIG is false.
            config_json=json.dumps(info["config"])
            if self.runtime.settings.expose_model_config
            else "",
        )

    async def _answer_item(
        self, request: detector_pb2.DetectRequest, context: grpc.aio.ServicerContext
    ) -> detector_pb2.DetectResponse:
        result = await self._observed_detect(request, context, paced=True)
        return self._answer(request.request_id, result)

    @contextlib.contextmanager
    def _call_slot(self) -> Iterator[None]:
        """Count one detection call; refuse it at once beyond `SSD_GRPC_MAX_IN_FLIGHT`."""
        if self.calls.full:
            self._observe(grpc.StatusCode.RESOURCE_EXHAUSTED, time.perf_counter())
        with self.calls.slot():
            yield

    async def _observed_detect(
        self,
        request: detector_pb2.DetectRequest,
        context: grpc.aio.ServicerContext,
        *,
        paced: bool = False,
    ) -> DetectResult:
        """`Runtime.detect` on one request, its status code and latency recorded in the metrics.

        Raises:
            ServiceError: from `Runtime.detect`, after its status code is recorded.
        """
        started = time.perf_counter()
        try:
            result = await self.runtime.detect(
                request.image,
                _params(request),
                timeout_s=context.time_remaining(),
                paced=paced,
                model=request.model or None,
            )
        except ServiceError as error:
            self._observe(error.grpc_code, started, request.model)
            raise
        except asyncio.CancelledError:  # the client cancelled or went away
            self._observe(grpc.StatusCode.CANCELLED, started, request.model)
            self.runtime.abandoned.record("grpc")
            raise
        self.runtime.metrics.observe_request(
            "grpc",
            grpc.StatusCode.OK.name,
            time.perf_counter() - started,
            result.model_name,
            result.repository_version,
        )
        return result

    def _observe(self, code: grpc.StatusCode, started: float, model: str = "") -> None:
        labels = self.runtime.model_labels(model or None)
        self.runtime.metrics.observe_request(
            "grpc", code.name, time.perf_counter() - started, *labels
        )


def build_server(
    runtime: Runtime, address: str
) -> tuple[grpc.aio.Server, int, health.HealthServicer]:
    """A grpc.aio server with the detector, health and reflection services, bound to `address`.

    TLS, the bearer-token check (health stays open) and reflection follow `runtime.settings`.

    Returns:
        The server (not started), the bound port (useful with port 0) and the health servicer,
        whose status starts NOT_SERVING; `set_serving` flips it.
    """
    settings = runtime.settings
    server = grpc.aio.server(
        interceptors=[
            GuardInterceptor(token=_token(settings), open_services=(health.SERVICE_NAME,))
        ],
        options=[
            # Without this a second process could bind the same port and take half the calls.
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", max_message_bytes(settings.max_image_bytes)),
            ("grpc.max_allowed_incoming_connections", settings.grpc_max_connections),
            # A connection that never completes the HTTP/2 handshake gives its slot back after
            # this (grpc's default is 120 s), like an HTTP connection that never sends headers.
            ("grpc.server_handshake_timeout_ms", _HANDSHAKE_TIMEOUT_MS),
            ("grpc.max_concurrent_streams", settings.grpc_max_streams_per_connection),
        ],
        maximum_concurrent_rpcs=settings.grpc_max_in_flight + _SPARE_RPCS,
    )
    calls = CallLimit(settings.grpc_max_in_flight)
    # The generated registration function has no annotations (grpc_tools writes none).
    add_servicer: Any = detector_pb2_grpc.add_DetectorServicer_to_server
    add_servicer(DetectorServicer(runtime, calls), server)
    oip_grpc.add_to_server(runtime, calls, server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    set_serving(health_servicer, False)
    if settings.grpc_reflection:
        reflection.enable_server_reflection(
            (SERVICE_NAME, oip_grpc.SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME),
            server,
            pool=_reflection_pool(),
        )
    credentials = grpc_server_credentials(settings)
    if credentials is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, credentials)
    if port == 0:
        raise RuntimeError(f"could not bind the gRPC server to {address}")
    return server, port, health_servicer


def _token(settings: Settings) -> str | None:
    return None if settings.auth_token is None else settings.auth_token.get_secret_value()


def set_serving(health_servicer: health.HealthServicer, serving: bool) -> None:
    """Report SERVING / NOT_SERVING for the whole server ("") and for each API service."""
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in ("", SERVICE_NAME, oip_grpc.SERVICE_NAME):
        health_servicer.set(name, status)


def _reflection_pool() -> descriptor_pool.DescriptorPool:
    """A descriptor pool holding every served service's files, for reflection: the inference
    messages live in a private pool (`service.proto_pool`), the others in the default one."""
    pool = descriptor_pool.DescriptorPool()
    for module in (detector_pb2, health_pb2, reflection_pb2, model_config_pb2, grpc_service_pb2):
        pool.AddSerializedFile(module.DESCRIPTOR.serialized_pb)
    return pool


def _error_response(
    request: detector_pb2.DetectRequest, error: ServiceError
) -> detector_pb2.DetectResponse:
    """The response reporting `error` for one stream item, with its `request_id`."""
    error_pb = detector_pb2.Error(code=error.grpc_code.value[0], message=error.message)
    return detector_pb2.DetectResponse(request_id=request.request_id, error=error_pb)


def _params(request: detector_pb2.DetectRequest) -> DetectParams:
    return DetectParams(
        score_threshold=(request.score_threshold if request.HasField("score_threshold") else None),
        max_detections=request.max_detections if request.HasField("max_detections") else None,
        classes=tuple(request.classes),
    )


def _to_response(request_id: str, result: DetectResult) -> detector_pb2.DetectResponse:
    return detector_pb2.DetectResponse(
        request_id=request_id,
        model_name=result.model_name,
        model_version=result.model_version,
        image_width=result.width,
        image_height=result.height,
        detections=[
            detector_pb2.Detection(
                label=name,
                class_id=label,
                score=score,
                box=detector_pb2.Box(xmin=box[0], ymin=box[1], xmax=box[2], ymax=box[3]),
            )
            for box, score, label, name in result.detections.rows()
        ],
    )
