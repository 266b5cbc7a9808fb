"""Domain errors of the service, each mapped to one HTTP status and one gRPC code (here only).

Messages are stable strings: clients and tests may match on them.
"""

from __future__ import annotations

import grpc


class ServiceError(Exception):
    """Base class: a request failed for a reason the client should be told about."""

    http_status: int = 500
    grpc_code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidImageError(ServiceError):
    """Not an image, truncated or corrupt data, zero bytes, unsupported image format."""

    http_status = 400
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT


class ImageTooLargeError(ServiceError):
    """Over the byte limit, or declared dimensions over the pixel limit (decompression bomb)."""

    http_status = 413
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT


class MalformedRequestError(ServiceError):
    """HTTP framing or multipart structure that cannot be trusted or parsed."""

    http_status = 400
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT


class RequestTimeoutError(ServiceError):
    """The request body did not arrive in time (a slow or stalled client)."""

    http_status = 408
    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED


class UnsupportedMediaTypeError(ServiceError):
    """HTTP body that is neither `multipart/form-data` nor `image/*`."""

    http_status = 415
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT


class InvalidParameterError(ServiceError):
    """A request parameter out of range or naming an unknown class."""

    http_status = 422
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT


class InvalidTensorError(ServiceError):
    """An Open Inference Protocol request that does not fit the protocol or the model's
    contract: tensor names, datatypes, shapes, binary framing, request JSON."""

    http_status = 400
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT


class ModelNotFoundError(ServiceError):
    """The request names a model (or version) the repository does not serve."""

    http_status = 404
    grpc_code = grpc.StatusCode.NOT_FOUND


class ModelLoadError(ServiceError):
    """A model version failed to load; the version serving before (if any) still serves."""

    http_status = 400
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT


class OverloadedError(ServiceError):
    """The batcher's queue is full; retry after `retry_after_s`."""

    http_status = 503
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    retry_after_s = 1


class NotServingError(ServiceError):
    """The model is not loaded yet, or the service is shutting down."""

    http_status = 503
    grpc_code = grpc.StatusCode.UNAVAILABLE
    retry_after_s = 1


class DeadlineExceededError(ServiceError):
    """The request's deadline passed before its batch was computed."""

    http_status = 504
    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED


class InferenceFailedError(ServiceError):
    """The forward pass of the request's batch raised; other batches are unaffected."""

    http_status = 500
    grpc_code = grpc.StatusCode.INTERNAL


class InternalError(ServiceError):
    """A bug or an unexpected failure while answering one request; the log has the cause."""

    http_status = 500
    grpc_code = grpc.StatusCode.INTERNAL


class ClientGoneError(ServiceError):
    """The client disconnected or cancelled; its request was dropped (nginx's 499)."""

    http_status = 499
    grpc_code = grpc.StatusCode.CANCELLED


OIP_PATH_PREFIX = "/v2"


def http_error_body(message: str, path: str = "") -> dict[str, str]:
    """The JSON body of an HTTP error answer: `{"detail": message}` (this API's `ErrorResponse`),
    or `{"error": message}` under `/v2`, the Open Inference Protocol's error shape."""
    if is_oip_path(path):
        return {"error": message}
    return {"detail": message}


def is_oip_path(path: str) -> bool:
    """An HTTP path of the Open Inference Protocol (`/v2` and below)."""
    return path == OIP_PATH_PREFIX or path.startswith(OIP_PATH_PREFIX + "/")


def oip_http_status(error: ServiceError) -> int:
    """The HTTP status of `error` on the Open Inference Protocol: as on `/detect`, except that
    a bad parameter is 400 (the protocol's status for a request it refuses), not 422."""
    return 400 if error.http_status == 422 else error.http_status


def retry_after_s(error: ServiceError) -> int | None:
    """Seconds for an HTTP `Retry-After` header, or None when retrying will not help."""
    return getattr(error, "retry_after_s", None)
