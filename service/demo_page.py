"""The browser demo: `GET /` serves `static/index.html`, `/static/*` its script and styles.

Plain files packaged with `service/` (no build step, no CDN, no web fonts), so the page works
offline. It talks to the public API only: `POST /detect`, `GET /model` and, when the served
OpenAPI document lists it, the model repository index `POST /v2/repository/index`.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"


def mount_demo(app: FastAPI) -> None:
    """Add `GET /` (the page) and the `/static` files to `app`; neither is in the OpenAPI."""

    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.add_api_route("/", index, methods=["GET"], include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
