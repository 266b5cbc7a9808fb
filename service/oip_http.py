"""The Open Inference Protocol (KServe v2) over HTTP, on the same port as `/detect`.

Health: `GET /v2/health/live` (200 while the process serves HTTP) and `GET /v2/health/ready`
(200 when every model that should be loaded is loaded and warmed up and the server is not
draining; otherwise 503, since the protocol reads any non-200 answer as not ready); a model's
`GET /v2/models/{m}[/versions/{v}]/ready` likewise (404 for a model the repository does not
have). Metadata: `GET /v2`, `GET /v2/models/{m}[/versions/{v}]`; the model configuration
(`.../config`) and statistics (`.../stats`, `GET /v2/models/stats`) extensions; inference:
`POST /v2/models/{m}[/versions/{v}]/infer` (JSON and binary tensor data,
`service.oip_http_codec`); the model repository extension: `POST /v2/repository/index`,
`POST /v2/repository/models/{m}/load` and `/unload`. Errors are `{"error": "..."}` with the
status `service.errors.oip_http_status` gives (404 unknown model, 400 bad request, ...).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from service import oip_repository, oip_stats
from service.errors import ClientGoneError, InvalidTensorError, ServiceError
from service.http_body import declared_length, read_body
from service.http_exchange import BodyProgress, cancel_on_disconnect, error_response
from service.images import max_message_bytes
from service.in_flight import InFlightBudget
from service.oip_contract import model_config, model_metadata, server_metadata
from service.oip_http_codec import (
    HEADER_LENGTH,
    HttpInferRequest,
    encode_response,
    inflate,
    json_bytes,
    parse_request,
)
from service.oip_infer import HTTP, InferResponse, infer, observe_refused
from service.runtime import Runtime

oip_router = APIRouter(prefix="/v2", tags=["open inference protocol"])
# Requests with up to this much JSON, not compressed, are parsed on the event loop; the others
# in a thread. Binary tensor data does not count: it is sliced, not parsed.
_INLINE_PARSE_BYTES = 64 * 1024
_SMALL_BODY_BYTES = 64 * 1024  # a repository request: a few parameters


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/json": {
                "schema": {"type": "object", "properties": {"error": {"type": "string"}}}
            }
        },
    }


Responses = dict[int | str, dict[str, Any]]
_NOT_FOUND: Responses = {404: _error("No such model, or that version is not loaded.")}
_INFER_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
_INFER_ERRORS: Responses = {
    400: _error("A request that does not fit the protocol or the model: JSON, tensors, "
                "parameters, a corrupt image (the message names the item)."),
    **_NOT_FOUND,
    413: _error("Body over the limit (2 x SSD_MAX_IMAGE_BYTES), or an image over its limits."),
    503: _error("Queue or in-flight limit full (Retry-After), not ready, or shutting down."),
    504: _error("The request's deadline passed before inference."),
}  # fmt: skip


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _oip_error(error: ServiceError, request: Request) -> JSONResponse:
    return error_response(error, path=request.url.path)


@oip_router.get("/health/live")
async def server_live() -> JSONResponse:
    """Liveness: the server answers."""
    return JSONResponse({"live": True})


@oip_router.get(
    "/health/ready", responses={503: {"description": "Loading, or draining for shutdown."}}
)
async def server_ready(request: Request) -> JSONResponse:
    """Readiness: every model that should be loaded is loaded and warmed up, not draining."""
    ready = _runtime(request).ready
    return JSONResponse({"ready": ready}, status_code=200 if ready else 503)


@oip_router.get("")
async def server_metadata_route() -> JSONResponse:
    """Server metadata: name, version and the protocol extensions implemented."""
    return JSONResponse(server_metadata())


@oip_router.get("/models/stats", responses=_NOT_FOUND)
async def all_statistics(request: Request) -> JSONResponse:
    """Statistics of every loaded model version (statistics extension)."""
    return _statistics(request, "", "")


@oip_router.get("/models/{model}", responses=_NOT_FOUND)
async def model_metadata_route(request: Request, model: str) -> JSONResponse:
    """Model metadata: versions, platform, input and output tensors."""
    return _metadata(request, model, "")


@oip_router.get("/models/{model}/versions/{version}", responses=_NOT_FOUND)
async def version_metadata_route(request: Request, model: str, version: str) -> JSONResponse:
    """Model metadata of one version."""
    return _metadata(request, model, version)


@oip_router.get("/models/{model}/ready", responses=_NOT_FOUND)
async def model_ready(request: Request, model: str) -> JSONResponse:
    """200 when the model serves (loaded, warmed up), else 503."""
    return _ready(request, model, "")


@oip_router.get("/models/{model}/versions/{version}/ready", responses=_NOT_FOUND)
async def version_ready(request: Request, model: str, version: str) -> JSONResponse:
    """200 when that version of the model serves, else 503."""
    return _ready(request, model, version)


@oip_router.get("/models/{model}/config", responses=_NOT_FOUND)
async def model_config_route(request: Request, model: str) -> JSONResponse:
    """Triton's model configuration JSON (model configuration extension)."""
    return _config(request, model, "")


@oip_router.get("/models/{model}/versions/{version}/config", responses=_NOT_FOUND)
async def version_config_route(request: Request, model: str, version: str) -> JSONResponse:
    """The model configuration of one version."""
    return _config(request, model, version)


@oip_router.get("/models/{model}/stats", responses=_NOT_FOUND)
async def model_statistics(request: Request, model: str) -> JSONResponse:
    """Statistics of the model's loaded version (statistics extension)."""
    return _statistics(request, model, "")


@oip_router.get("/models/{model}/versions/{version}/stats", responses=_NOT_FOUND)
async def version_statistics(request: Request, model: str, version: str) -> JSONResponse:
    """Statistics of one version."""
    return _statistics(request, model, version)


@oip_router.post("/models/{model}/infer", responses=_INFER_ERRORS, openapi_extra=_INFER_BODY)
async def model_infer(request: Request, model: str) -> Response:
    """Detect objects in B images (input IMAGE, BYTES [B]): JSON or binary tensor data."""
    return await _infer(request, model, None)


@oip_router.post(
    "/models/{model}/versions/{version}/infer",
    responses=_INFER_ERRORS,
    openapi_extra=_INFER_BODY,
)
async def version_infer(request: Request, model: str, version: str) -> Response:
    """Inference on one version of the model."""
    return await _infer(request, model, version)


@oip_router.post("/repository/index")
async def repository_index(request: Request) -> JSONResponse:
    """Every model and version of the repository: name, version, state, reason."""
    try:
        body = await _small_json(request)
        ready = body.get("ready", False)
        if not isinstance(ready, bool):
            raise _bad_field("ready", "a boolean")
    except ServiceError as error:
        return _oip_error(error, request)
    return JSONResponse(oip_repository.index(_runtime(request).repository, ready))


@oip_router.post(
    "/repository/models/{model}/load",
    responses={**_NOT_FOUND, 400: _error("The version failed to load (the old one serves).")},
)
async def repository_load(request: Request, model: str) -> JSONResponse:
    """Load the model's latest version beside the serving one, then switch to it."""
    try:
        parameters = await _load_parameters(request)
        await oip_repository.load(_runtime(request).repository, model, parameters)
    except ServiceError as error:
        return _oip_error(error, request)
    return JSONResponse({})


@oip_router.post("/repository/models/{model}/unload", responses=_NOT_FOUND)
async def repository_unload(request: Request, model: str) -> JSONResponse:
    """Stop serving the model; requests it accepted finish first."""
    try:
        parameters = await _load_parameters(request)
        await oip_repository.unload(_runtime(request).repository, model, parameters)
    except ServiceError as error:
        return _oip_error(error, request)
    return JSONResponse({})


def _metadata(request: Request, model: str, version: str) -> JSONResponse:
    try:
        target = _runtime(request).repository.route(model, version or None)
    except ServiceError as error:
        return _oip_error(error, request)
    return JSONResponse(model_metadata(target.name, [target.version]))


def _ready(request: Request, model: str, version: str) -> JSONResponse:
    runtime = _runtime(request)
    try:
        ready = runtime.ready and oip_repository.model_ready(runtime.repository, model, version)
    except ServiceError as error:
        return _oip_error(error, request)
    body = {"name": model, "ready": ready}
    return JSONResponse(body, status_code=200 if ready else 503)


def _config(request: Request, model: str, version: str) -> JSONResponse:
    runtime = _runtime(request)
    try:
        target = runtime.repository.route(model, version or None)
    except ServiceError as error:
        return _oip_error(error, request)
    config = model_config(
        target.name,
        runtime.settings,
        target.batcher.batch_sizes,
        target.detector.config.class_names,
        target.detector.engine,
    )
    return JSONResponse(config)


def _statistics(request: Request, model: str, version: str) -> JSONResponse:
    try:
        models = oip_stats.select_versions(_runtime(request).repository, model, version)
    except ServiceError as error:
        return _oip_error(error, request)
    return JSONResponse(oip_stats.statistics(models))


async def _infer(request: Request, model: str, version: str | None) -> Response:
    """Read, parse and run one inference request; every failure is an OIP error answer.

    `infer` counts the requests it runs in the metrics; one refused before (admission, body,
    parsing, a client gone before it started) is counted here.
    """
    runtime = _runtime(request)
    settings = runtime.settings
    budget: InFlightBudget = request.app.state.in_flight
    limit = max_message_bytes(settings.max_image_bytes)
    body_state = BodyProgress(request)
    started = time.perf_counter()
    running = False

    async def run(parsed: HttpInferRequest) -> InferResponse:
        nonlocal running
        running = True
        return await infer(runtime, parsed.request, HTTP)

    try:
        runtime.check_room(model, version)  # a full queue refuses before the body is read
        with budget.admit(declared_length(request, limit)) as ticket:
            body = await read_body(
                request, max_bytes=limit, timeout_s=settings.http_body_timeout_s, ticket=ticket
            )
            body_state.complete = True
            parsed = await _parse(request, body, model, version, limit)
            del body
            answer = await cancel_on_disconnect(request, run(parsed))
    except ServiceError as error:
        if not running:
            observe_refused(runtime, HTTP, error, started, model)
            if isinstance(error, ClientGoneError):
                runtime.abandoned.record(HTTP)
        closing = body_state.close_after_error()
        return error_response(error, close_connection=closing, path=request.url.path)
    content, headers = encode_response(answer, parsed.binary_outputs)
    return Response(content, headers=headers)


async def _parse(
    request: Request, body: bytes, model: str, version: str | None, limit: int
) -> HttpInferRequest:
    """The parsed request (`oip_http_codec.parse_request`), large bodies off the event loop."""
    max_images = _runtime(request).settings.max_queue_size

    def parse() -> HttpInferRequest:
        data = inflate(body, request.headers.get("content-encoding"), limit)
        return parse_request(
            data,
            request.headers.get(HEADER_LENGTH),
            model=model,
            version=version,
            max_images=max_images,
        )

    compressed = request.headers.get("content-encoding") is not None
    header_length = request.headers.get(HEADER_LENGTH)
    if not compressed and json_bytes(header_length, len(body)) <= _INLINE_PARSE_BYTES:
        return parse()
    return await asyncio.to_thread(parse)


async def _small_json(request: Request) -> dict[str, Any]:
    """The JSON object body of a repository request (empty body: {}), at most 64 KiB."""
    budget: InFlightBudget = request.app.state.in_flight
    timeout_s = _runtime(request).settings.http_body_timeout_s
    with budget.admit(declared_length(request, _SMALL_BODY_BYTES)) as ticket:
        body = await read_body(
            request, max_bytes=_SMALL_BODY_BYTES, timeout_s=timeout_s, ticket=ticket
        )
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except ValueError as error:
        raise _invalid(f"request JSON does not parse: {error}") from None
    if not isinstance(value, dict):
        raise _invalid("request JSON must be an object")
    return value


async def _load_parameters(request: Request) -> dict[str, Any]:
    parameters = (await _small_json(request)).get("parameters", {})
    if not isinstance(parameters, dict):
        raise _bad_field("parameters", "an object")
    return parameters


def _invalid(message: str) -> ServiceError:
    return InvalidTensorError(message)


def _bad_field(name: str, kind: str) -> ServiceError:
    return _invalid(f"{name!r} must be {kind}")
