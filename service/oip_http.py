"""The Open Inference Protocol (KServe v2) over HTTP, on the same port as `/detect`.

Health: `GET /v2/health/live` (200 while the process serves HTTP) and `GET /v2/health/ready`
(200 when every model that should be loaded is loaded and warmed up and the server is not
draining; otherwise 503, since the protocol reads any non-200 answer as not ready). Bodies are
`{"live": bool}` / `{"ready": bool}`; errors are `{"error": "..."}` (`service.errors`).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from service.runtime import Runtime

oip_router = APIRouter(prefix="/v2", tags=["open inference protocol"])


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


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
