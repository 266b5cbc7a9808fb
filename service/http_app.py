"""The HTTP API (FastAPI): `POST /detect`, `/healthz`, `/readyz`, `/model`, `/metrics`, `/docs`,
and the browser demo page at `/` (`service.demo_page`).

`create_app(settings, runtime=None)` builds the app. Given a `Runtime` (as `service.__main__`
does, to share it with gRPC) the app serves it; without one the app's lifespan creates,
starts and drains its own, so `uvicorn` alone can run it. Nothing heavy happens at import.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.demo_page import mount_demo
from service.errors import (
    ClientGoneError,
    MalformedRequestError,
    ServiceError,
    http_error_body,
)
from service.http_body import body_kind, declared_length, max_body_bytes, read_image
from service.http_exchange import BodyProgress, cancel_on_disconnect, error_response
from service.http_shedding import ShedLoad
from service.in_flight import InFlightBudget
from service.metrics import CONTENT_TYPE
from service.oip_http import oip_router
from service.params import split_class_list
from service.render import RENDER_TYPES, render_detections, response_type
from service.runtime import DetectParams, DetectResult, Runtime
from service.security import BearerAuth, document_bearer_auth
from service.settings import Settings
from ssd_core.decoder_config import SCORE_THRESHOLD_BELOW, SCORE_THRESHOLD_MIN

T = TypeVar("T")
logger = logging.getLogger(__name__)


class BoxOut(BaseModel):
    """[xmin, ymin, xmax, ymax] in original-image pixels."""

    xmin: float
    ymin: float
    xmax: float
    ymax: float


class DetectionOut(BaseModel):
    label: str
    class_id: int = Field(description="Model label, 1..num_classes-1 (0 is background).")
    score: float
    box: BoxOut


class DetectResponse(BaseModel):
    model_name: str
    model_version: str
    width: int = Field(description="Original image width in pixels (after EXIF orientation).")
    height: int = Field(description="Original image height in pixels.")
    detections: list[DetectionOut] = Field(description="Sorted by score, highest first.")


class ErrorResponse(BaseModel):
    """Every error answer of this API (FastAPI's own validation errors included)."""

    detail: str = Field(description="What was wrong and, where it helps, what to do.")


class StatusResponse(BaseModel):
    status: str


def _errors(descriptions: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries: each status with its description and `ErrorResponse`."""
    return {code: {"model": ErrorResponse, "description": d} for code, d in descriptions.items()}


_DETECT_ERRORS = _errors(
    {
        400: "Not an image, truncated or corrupt data, empty body, malformed multipart or "
        "framing (Content-Length with Transfer-Encoding).",
        408: "The body did not arrive within SSD_HTTP_BODY_TIMEOUT_S.",
        413: "Over the byte, pixel or decoded-size limit.",
        415: "Content type neither multipart/form-data nor image/*.",
        404: "No model of that name is loaded (model=).",
        422: "A bad parameter (range, type, unknown class).",
        499: "The client went away before the answer (logged, rarely seen by a client).",
        500: "The forward pass of the request's batch failed.",
        503: "Queue, in-flight or connection limit full (Retry-After), not ready, or shutting "
        "down.",
        504: "The request's deadline passed before inference.",
    }
)


class ModelResponse(BaseModel):
    name: str
    version: str
    class_names: list[str] = Field(description="Foreground classes; class_names[i] is label i+1.")
    input_height: int
    input_width: int
    decoder: dict[str, Any] = Field(
        description="The model's DecoderConfig: a request's score_threshold must be at least "
        "its score_threshold, its max_detections at most its max_detections."
    )
    engine: dict[str, str] = Field(
        description="What runs the model (SSD_ENGINE, SSD_PRECISION): name (tf, tf-xla, "
        "onnxruntime, openvino), precision (fp32, bf16, float16, int8) and a one-line detail."
    )
    config: dict[str, Any] | None = Field(
        description="The full SSDConfig; null when SSD_EXPOSE_MODEL_CONFIG is false."
    )


# Dependencies are `async def`: FastAPI runs a plain `def` dependency in its thread pool, a
# thread hop per request and up to 40 extra threads that stay after a flood.
async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_in_flight(request: Request) -> InFlightBudget:
    budget: InFlightBudget = request.app.state.in_flight
    return budget


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
InFlightDep = Annotated[InFlightBudget, Depends(get_in_flight)]
_DETECT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"image": {"type": "string", "format": "binary"}},
                    "required": ["image"],
                }
            },
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}

detect_router = APIRouter(tags=["detection"])
ops_router = APIRouter(tags=["operations"])


_DETECT_IMAGES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Detections as JSON, or (render) the image with the boxes drawn.",
        "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in RENDER_TYPES},
    }
}


@detect_router.post(
    "/detect",
    response_model=DetectResponse,
    responses={**_DETECT_IMAGES, **_DETECT_ERRORS},
    openapi_extra=_DETECT_BODY,
)
async def detect(
    request: Request,
    response: Response,
    runtime: RuntimeDep,
    in_flight: InFlightDep,
    score_threshold: Annotated[
        float | None,
        Query(
            ge=SCORE_THRESHOLD_MIN,
            lt=SCORE_THRESHOLD_BELOW,
            description="Keep detections scoring above this, in [0, 1); not below the model "
            "decoder's score_threshold (GET /model: decoder).",
        ),
    ] = None,
    max_detections: Annotated[
        int | None,
        Query(
            ge=1,
            description="At most this many; not above the model decoder's max_detections "
            "(GET /model: decoder).",
        ),
    ] = None,
    classes: Annotated[
        str | None, Query(description="Comma-separated class names or label ids to keep.")
    ] = None,
    model: Annotated[
        str | None,
        Query(description="Repository model to use; unset: SSD_DEFAULT_MODEL (GET /v2/models)."),
    ] = None,
    render: Annotated[
        bool | None,
        Query(
            description="true: answer with the image, boxes drawn (PNG or JPEG by Accept, else "
            "the upload's format); false: JSON; unset: Accept decides, JSON by default."
        ),
    ] = None,
) -> DetectResponse | Response:
    """Detect objects in one image, sent as multipart field `image` or as an `image/*` body."""
    started = time.perf_counter()
    settings = runtime.settings
    body = BodyProgress(request)
    try:
        params = DetectParams(
            score_threshold=score_threshold,
            max_detections=max_detections,
            classes=split_class_list(classes),
        )
        kind = body_kind(request)
        declared = declared_length(request, max_body_bytes(kind, settings.max_image_bytes))
        runtime.check_room(model)  # a full queue refuses before the body is read
        with in_flight.admit(declared) as ticket:
            data = await read_image(
                request,
                kind,
                max_image_bytes=settings.max_image_bytes,
                timeout_s=settings.http_body_timeout_s,
                ticket=ticket,
            )
            body.complete = True
            media_type = response_type(render, request.headers.get("accept"), data)
            # A rendering request keeps its upload to draw on; others leave it to the runtime.
            upload = data if media_type is not None else None
            work = runtime.detect(data, params, model=model)
            del data  # only the runtime holds the body now, and drops it once it is decoded
            result = await cancel_on_disconnect(request, work)
            image = None
            if upload is not None and media_type is not None:
                image = await asyncio.to_thread(
                    render_detections, upload, result.detections, media_type,
                    max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels,
                )  # fmt: skip
    except ClientGoneError as error:
        # Nobody reads this answer; counted (499) and summarised once per second, no traceback.
        labels = runtime.model_labels(model)
        runtime.metrics.observe_request("http", "499", time.perf_counter() - started, *labels)
        runtime.abandoned.record("http")
        return error_response(error, close_connection=body.close_after_error())
    except ServiceError as error:
        runtime.metrics.observe_request(
            "http",
            str(error.http_status),
            time.perf_counter() - started,
            *runtime.model_labels(model),
        )
        return error_response(error, close_connection=body.close_after_error())
    if image is not None and media_type is not None:
        elapsed_s = time.perf_counter() - started
        runtime.metrics.observe_request(
            "http", "200", elapsed_s, result.model_name, result.repository_version
        )
        headers = {**_server_timing(elapsed_s, result.stages), **_model_headers(result)}
        return Response(image, media_type=media_type, headers=headers)
    encoding = time.perf_counter()
    payload = _to_response(result).model_dump_json()
    serialised = time.perf_counter()
    runtime.observe_serialisation(result, serialised - encoding)
    elapsed_s = serialised - started
    runtime.metrics.observe_request(
        "http", "200", elapsed_s, result.model_name, result.repository_version
    )
    stages = {**result.stages, "serialisation": serialised - encoding}
    return Response(
        payload, media_type="application/json", headers=_server_timing(elapsed_s, stages)
    )


def _server_timing(elapsed_s: float, stages: dict[str, float]) -> dict[str, str]:
    """The W3C Server-Timing header: the whole request first (`detect`, which the demo page
    shows), then where its time went (`service.runtime.STAGES`); browsers' dev tools chart it."""
    entries = [("detect", elapsed_s), *stages.items()]
    return {"Server-Timing": ", ".join(f"{name};dur={s * 1000:.2f}" for name, s in entries)}


@ops_router.get("/healthz", response_model=StatusResponse)
async def healthz() -> dict[str, str]:
    """Liveness: the process serves HTTP."""
    return {"status": "ok"}


@ops_router.get(
    "/readyz",
    response_model=StatusResponse,
    responses={503: {"model": StatusResponse, "description": "Loading or shutting down."}},
)
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    """Readiness: model loaded, every padded batch size warmed up, not shutting down."""
    if runtime.ready:
        return JSONResponse({"status": "ready"})
    return JSONResponse({"status": "not ready"}, status_code=503)


@ops_router.get(
    "/model",
    response_model=ModelResponse,
    responses=_errors({404: "No model of that name is loaded.", 503: "Not loaded yet."}),
)
async def model(
    runtime: RuntimeDep,
    model: Annotated[str | None, Query(description="Repository model; unset: the default.")] = None,
) -> ModelResponse | JSONResponse:
    """A served model: name, version, classes, input size, configuration."""
    try:
        info = runtime.model_info(model)
    except ServiceError as error:
        return error_response(error)
    if not runtime.settings.expose_model_config:
        info["config"] = None
    return ModelResponse(**info)


@ops_router.get("/metrics", response_class=Response)
async def metrics(runtime: RuntimeDep) -> Response:
    """Prometheus metrics in the text exposition format."""
    return Response(runtime.metrics.exposition(), media_type=CONTENT_TYPE)


def create_app(settings: Settings, runtime: Runtime | None = None) -> FastAPI:
    """The FastAPI app. Without `runtime`, its lifespan owns a new one (load, warm up, drain)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if runtime is not None:
            app.state.runtime = runtime
            yield
            return
        owned = Runtime(settings)
        app.state.runtime = owned
        await owned.start()
        yield
        await owned.drain()

    app = FastAPI(
        title="SSD detection service",
        version="1",
        lifespan=lifespan,
        description="SSD object detection. Boxes are [xmin, ymin, xmax, ymax] in image pixels.",
        docs_url="/docs" if settings.docs_enabled else None,
        redoc_url="/redoc" if settings.docs_enabled else None,
        openapi_url="/openapi.json" if settings.docs_enabled else None,
    )
    if runtime is not None:
        app.state.runtime = runtime
    app.state.in_flight = InFlightBudget(
        settings.http_max_in_flight, settings.http_max_in_flight_bytes
    )
    app.include_router(detect_router)
    app.include_router(ops_router)
    app.include_router(oip_router)
    mount_demo(app)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
    app.add_middleware(ShedLoad)  # innermost: inside the token check and CORS
    _add_security(app, settings)
    app.add_middleware(RefuseAmbiguousFraming)
    return app


def _add_security(app: FastAPI, settings: Settings) -> None:
    """The bearer-token check, then CORS outside it (so preflights are answered first)."""
    if settings.auth_token is not None:
        app.add_middleware(BearerAuth, token=settings.auth_token.get_secret_value())
        app.openapi = document_bearer_auth(app.openapi)  # type: ignore[method-assign]
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["authorization", "content-type", "accept"],
            expose_headers=["retry-after", "server-timing", "x-model-name", "x-model-version",
                            "x-detection-count"],
        )  # fmt: skip


class RefuseAmbiguousFraming:
    """ASGI middleware: 400 and close for a request with both Content-Length and
    Transfer-Encoding (RFC 9112 section 6.1: a server ought to treat it as an error, since
    two parsers could frame it differently - the basis of request smuggling)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            names = [name for name, _ in scope["headers"]]
            if b"transfer-encoding" in names and b"content-length" in names:
                error = MalformedRequestError(
                    "request has both Content-Length and Transfer-Encoding; send one"
                )
                answer = error_response(error, close_connection=True, path=scope["path"])
                await answer(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    """FastAPI's parameter validation as one `ErrorResponse` line per bad parameter."""
    assert isinstance(error, RequestValidationError)
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item.get("loc", ()) if part not in ("query", "body"))
        problems.append(f"{where or 'request'}: {item.get('msg', 'invalid value')}")
    return JSONResponse(http_error_body("; ".join(problems), request.url.path), status_code=422)


async def _http_error(request: Request, error: Exception) -> Response:
    """Starlette's own errors (404, 405, ...) as `ErrorResponse`, keeping their headers."""
    assert isinstance(error, StarletteHTTPException)
    detail = error.detail if isinstance(error.detail, str) else "request refused"
    return JSONResponse(
        http_error_body(detail, request.url.path),
        status_code=error.status_code,
        headers=dict(error.headers or {}),
    )


async def _unexpected_error(request: Request, error: Exception) -> JSONResponse:
    """A bug, not the client's fault: logged with its traceback, answered without it."""
    logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=error)
    message = "internal server error; the server log has the cause"
    return JSONResponse(http_error_body(message, request.url.path), 500)


def _model_headers(result: DetectResult) -> dict[str, str]:
    """What an image answer cannot carry in its body."""
    return {
        "X-Model-Name": result.model_name,
        "X-Model-Version": result.model_version,
        "X-Detection-Count": str(len(result.detections)),
    }


def _to_response(result: DetectResult) -> DetectResponse:
    return DetectResponse(
        model_name=result.model_name,
        model_version=result.model_version,
        width=result.width,
        height=result.height,
        detections=[
            DetectionOut(
                label=name,
                class_id=label,
                score=score,
                box=BoxOut(xmin=box[0], ymin=box[1], xmax=box[2], ymax=box[3]),
            )
            for box, score, label, name in result.detections.rows()
        ],
    )
