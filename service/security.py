"""Optional protection for exposed deployments: TLS material, the HTTP bearer-token check and
its place in the OpenAPI schema. (The gRPC token check is in `service.grpc_guard`.)

With `SSD_AUTH_TOKEN` set, every HTTP path needs `Authorization: Bearer <token>` except those
probes, scrapers and browsers reach without one: health and readiness (`/healthz`, `/readyz`,
`/v2/health/*`), `/metrics`, the API docs, and the static demo page (`/`, `/static/*`; its
requests to `/detect` and `/model` still need the token). CORS preflights pass (browsers send
them without credentials); the CORS middleware answers them.
"""

from __future__ import annotations

import hmac
import json
import ssl
from collections.abc import Callable
from typing import Any

import grpc

from service.errors import http_error_body
from service.settings import Settings
from service.startup import StartupError

OPEN_PATHS = frozenset(
    {"/healthz", "/readyz", "/metrics", "/", "/docs", "/docs/oauth2-redirect", "/redoc",
     "/openapi.json"}
)  # fmt: skip
OPEN_PREFIXES = ("/v2/health/", "/static/")
UNAUTHORIZED_MESSAGE = "missing or wrong bearer token: send 'Authorization: Bearer <token>'"


def is_open_path(path: str) -> bool:
    """Reachable without the token (see the module docstring)."""
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def check_tls_files(settings: Settings) -> None:
    """Load the certificate and key once, so a bad pair stops start-up with one line.

    Raises:
        StartupError: naming both variables and the TLS library's reason.
    """
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    except (ssl.SSLError, OSError) as error:
        raise StartupError(
            f"SSD_TLS_CERT_FILE={settings.tls_cert_file}, SSD_TLS_KEY_FILE="
            f"{settings.tls_key_file}: not a usable PEM certificate and key ({error})"
        ) from None


def grpc_server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS credentials for the gRPC port, or None for plaintext."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    return grpc.ssl_server_credentials(
        [(settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes())]
    )


class BearerAuth:
    """ASGI middleware: 401 (with `WWW-Authenticate: Bearer`) for a protected path without the
    token; constant-time comparison."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        body = json.dumps(http_error_body(UNAUTHORIZED_MESSAGE, scope["path"])).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b"Bearer"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _allowed(self, scope: Any) -> bool:
        if is_open_path(scope["path"]) or scope["method"] == "OPTIONS":
            return True
        for name, value in scope["headers"]:
            if name == b"authorization":
                return hmac.compare_digest(value, self._expected)
        return False


def document_bearer_auth(openapi: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """Wrap FastAPI's `app.openapi`: a bearer security scheme and a 401 answer on every
    protected operation, so the schema matches what the server returns."""
    cached: dict[str, Any] | None = None

    def schema() -> dict[str, Any]:
        nonlocal cached
        if cached is None:
            cached = _with_bearer(openapi())
        return cached

    return schema


def _with_bearer(document: dict[str, Any]) -> dict[str, Any]:
    error_schema = {"$ref": "#/components/schemas/ErrorResponse"}
    components = document.setdefault("components", {})
    components.setdefault("securitySchemes", {})["bearer"] = {"type": "http", "scheme": "bearer"}
    for path, operations in document.get("paths", {}).items():
        if is_open_path(path):
            continue
        for operation in operations.values():
            operation["security"] = [{"bearer": []}]
            operation.setdefault("responses", {})["401"] = {
                "description": "Missing or wrong bearer token.",
                "content": {"application/json": {"schema": error_schema}},
            }
    return document
