"""One Open Inference Protocol inference request, whatever its transport: B images through the
one request path (`Runtime.detect`), one answer with the output tensors.

The B images of a request are B items of the model's dynamic batcher, the same batcher that
serves `/detect` and `ssd.v1.Detect`, so every protocol shares batches. They run on the one
model version the request was routed to (`Runtime.pinned`), even if a reload switches
versions meanwhile. An image that fails fails the request with a message naming the item
(`IMAGE[3]: ...`) and the other images are dropped; the server goes on serving.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import grpc
import numpy as np

from service.errors import ServiceError, oip_http_status
from service.oip_contract import IMAGE, RequestOptions, detections_to_tensors
from service.params import max_detections_for
from service.repository import ModelVersion
from service.runtime import DetectResult, Runtime

HTTP, GRPC = "oip-http", "oip-grpc"  # protocol labels of the metrics


@dataclass(frozen=True)
class InferRequest:
    """A decoded inference request.

    Attributes:
        version: the repository version asked for; None: the one serving now.
        images: the encoded images, one per element of `IMAGE`.
        outputs: the output names to answer, in answer order (`oip_contract.output_names`).
    """

    model: str
    version: str | None
    id: str
    images: list[bytes]
    options: RequestOptions
    outputs: tuple[str, ...]


@dataclass(frozen=True)
class InferResponse:
    """The answer: `outputs` maps each requested output name to its tensor, in answer order;
    `model_version` is the repository version that computed it."""

    model_name: str
    model_version: str
    id: str
    outputs: dict[str, np.ndarray]


async def infer(
    runtime: Runtime,
    request: InferRequest,
    protocol: str,
    *,
    timeout_s: float | None = None,
    paced: bool = False,
) -> InferResponse:
    """Run `request`, recording its status and latency in the metrics under `protocol`.

    Args:
        timeout_s: time the transport leaves (a gRPC deadline); the request's `timeout`
            parameter may shorten it.
        paced: an item of a paced stream (`Runtime.detect`).
    Raises:
        ServiceError: as `Runtime.detect`, naming the failed image.
    """
    started = time.perf_counter()
    labels = (request.model, request.version or "")
    try:
        with runtime.pinned(request.model, request.version) as target:
            labels = (target.name, target.version)
            # K: the request's max_detections, else the default the runtime resolves too.
            k = max_detections_for(
                request.options.params.max_detections,
                runtime.settings.max_detections,
                target.detector.decoder_config,
            )
            results = await _detect_all(
                runtime, request, target, _shorter(timeout_s, request.options.timeout_s), paced
            )
    except ServiceError as error:
        runtime.metrics.observe_request(
            protocol, _status(protocol, error), time.perf_counter() - started, *labels
        )
        raise
    except asyncio.CancelledError:  # the client went away
        runtime.metrics.observe_request(
            protocol, _status(protocol, None, cancelled=True), time.perf_counter() - started,
            *labels,
        )  # fmt: skip
        runtime.abandoned.record(protocol)
        raise
    runtime.metrics.observe_request(
        protocol, _status(protocol, None), time.perf_counter() - started, *labels
    )
    tensors = detections_to_tensors(results, k)
    return InferResponse(
        model_name=labels[0],
        model_version=labels[1],
        id=request.id,
        outputs={name: tensors[name] for name in request.outputs},
    )


async def _detect_all(
    runtime: Runtime,
    request: InferRequest,
    target: ModelVersion,
    timeout_s: float | None,
    paced: bool,
) -> list[DetectResult]:
    """Every image of the request on `target`, concurrently; the first failure cancels the
    rest and is raised naming its item."""
    tasks = [
        asyncio.ensure_future(
            runtime.detect(image, request.options.params, timeout_s, paced=paced, target=target)
        )
        for image in request.images
    ]
    try:
        return list(await asyncio.gather(*tasks))
    except ServiceError as error:
        index = next(i for i, task in enumerate(tasks) if _raised(task, error))
        raise _naming_item(error, index) from error
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
            elif not task.cancelled():
                task.exception()  # a second failure is retrieved, not logged as "never retrieved"


def _raised(task: asyncio.Future[DetectResult], error: BaseException) -> bool:
    return task.done() and not task.cancelled() and task.exception() is error


def _naming_item(error: ServiceError, index: int) -> ServiceError:
    """The same kind of error (same status), its message naming the image."""
    return type(error)(f"{IMAGE}[{index}]: {error.message}")


def observe_refused(
    runtime: Runtime, protocol: str, error: ServiceError, started: float, model: str
) -> None:
    """Count a request refused before `infer` ran (unreadable body, bad tensors)."""
    runtime.metrics.observe_request(
        protocol, _status(protocol, error), time.perf_counter() - started,
        *runtime.model_labels(model),
    )  # fmt: skip


def _shorter(first: float | None, second: float | None) -> float | None:
    values = [value for value in (first, second) if value is not None]
    return min(values) if values else None


def _status(protocol: str, error: ServiceError | None, *, cancelled: bool = False) -> str:
    """The metrics status of a finished request: HTTP status or gRPC code name."""
    if protocol == GRPC:
        code = grpc.StatusCode.CANCELLED if cancelled else grpc.StatusCode.OK
        return str(code.name if error is None else error.grpc_code.name)
    if cancelled:
        return "499"
    return "200" if error is None else str(oip_http_status(error))
