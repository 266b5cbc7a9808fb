"""Entry point: `ssd-serve` or `python -m service`.

One process, one event loop: a uvicorn server (HTTP) and a grpc.aio server share one
`Runtime` (model, batcher). Both ports open at once so liveness answers while the model loads;
readiness (`/readyz`, gRPC health) turns true after warm-up. On SIGTERM or SIGINT: readiness
false, new requests refused, accepted ones finish (up to `SSD_SHUTDOWN_GRACE_S`), exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator

import uvicorn

from service.settings import Settings

logger = logging.getLogger("service")


class HttpServer(uvicorn.Server):
    """uvicorn without its own signal handling: `serve()` below owns SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(settings: Settings) -> None:
    """Run both servers until SIGTERM / SIGINT, then drain and stop them."""
    from service.grpc_server import build_server, set_serving
    from service.http_app import create_app
    from service.runtime import Runtime

    runtime = Runtime(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    grpc_server, grpc_port, health = build_server(runtime, f"{settings.host}:{settings.grpc_port}")
    await grpc_server.start()
    http_config = uvicorn.Config(
        create_app(settings, runtime),
        host=settings.host,
        port=settings.http_port,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=max(int(settings.shutdown_grace_s), 1),
    )
    http_server = HttpServer(http_config)
    http_task = asyncio.create_task(http_server.serve(), name="http")
    logger.info(
        "listening: HTTP on %s:%d, gRPC on port %d", settings.host, settings.http_port, grpc_port
    )

    start_task = asyncio.create_task(runtime.start(), name="model-load")
    await asyncio.wait(
        {start_task, asyncio.create_task(stop.wait())}, return_when="FIRST_COMPLETED"
    )
    if start_task.done() and start_task.exception() is None:
        set_serving(health, True)
        await stop.wait()
        logger.info("signal received: draining")
    else:
        logger.error("stopping before the model was ready")
    set_serving(health, False)
    runtime.begin_shutdown()
    if not start_task.done():
        start_task.cancel()
    await runtime.drain()
    await grpc_server.stop(grace=settings.shutdown_grace_s)
    http_server.should_exit = True
    await http_task
    if start_task.done() and not start_task.cancelled() and start_task.exception() is not None:
        raise start_task.exception()  # type: ignore[misc]
    logger.info("stopped")


def main() -> None:
    """Console script `ssd-serve`: read `SSD_*` settings, serve until SIGTERM."""
    settings = Settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logger.info("settings: %s", settings.model_dump_json())
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
