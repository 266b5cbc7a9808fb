"""Load shedding ahead of the routes: a detection request that finds its model's queue full
is refused by a thin ASGI layer, with the answer its route would give.

The routes (`POST /detect`, the Open Inference Protocol's `POST /v2/models/{model}[/versions/
{version}]/infer`) refuse a full queue themselves before reading the body, but only after
FastAPI has routed the request, solved its dependencies and validated its parameters: most of
the cost of a refusal. Under overload, refusals are most of the traffic and share the event
loop with the requests being served, so this layer answers them before any of that. It
decides nothing else: any other outcome of the check (unknown model, not serving) and every
other request go on to the app, which answers them as before.

It sits inside the authentication and CORS layers (`service.http_app`), so an unauthenticated
request still gets 401 and a browser can read the 503.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request

from service import oip_infer
from service.errors import OverloadedError, ServiceError
from service.http_exchange import BodyProgress, error_response

DETECT_PATH = "/detect"
MODELS_PREFIX = "/v2/models/"
INFER_SUFFIX = "/infer"


@dataclass(frozen=True)
class Target:
    """What a detection request asks for: its model and version (None: the default / the
    serving one) and the protocol label its metrics carry."""

    model: str | None
    version: str | None
    protocol: str


def detection_target(path: str, query_string: bytes) -> Target | None:
    """The target of a `POST` to `path` if `path` is a detection route, else None.

    `/detect` names its model in the query (`model`, the last one if repeated, as FastAPI
    reads it); an inference path names it, and maybe its version, in the path.
    """
    if path == DETECT_PATH:
        query = parse_qsl(query_string.decode("latin-1"))
        models = [value for name, value in query if name == "model"]
        return Target(models[-1] if models else None, None, "http")
    if not path.startswith(MODELS_PREFIX) or not path.endswith(INFER_SUFFIX):
        return None
    parts = path[len(MODELS_PREFIX) : -len(INFER_SUFFIX)].split("/")
    if len(parts) == 1 and parts[0]:
        return Target(parts[0], None, oip_infer.HTTP)
    if len(parts) == 3 and parts[0] and parts[1] == "versions" and parts[2]:
        return Target(parts[0], parts[2], oip_infer.HTTP)
    return None


class ShedLoad:
    """ASGI middleware: 503 with Retry-After for a detection request whose queue is full (the
    module docstring); the app's runtime is `scope["app"].state.runtime`."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            target = detection_target(scope["path"], scope["query_string"])
            if target is not None and (refusal := _refusal(scope, target)) is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _refusal(scope: Any, target: Target) -> Any:
    """The 503 answer when the target's queue is full (counted as the route counts it), else
    None."""
    started = time.perf_counter()
    runtime = getattr(scope["app"].state, "runtime", None)
    if runtime is None:
        return None
    try:
        runtime.check_room(target.model, target.version)
    except OverloadedError as error:
        elapsed_s = time.perf_counter() - started
        labels = runtime.model_labels(target.model)
        runtime.metrics.observe_request(target.protocol, "503", elapsed_s, *labels)
        closing = BodyProgress(Request(scope)).close_after_error()
        return error_response(error, close_connection=closing, path=scope["path"])
    except ServiceError:  # not serving, unknown model: the route's answer
        return None
    return None
