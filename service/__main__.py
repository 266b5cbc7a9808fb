"""Entry point: `ssd-serve` or `python -m service`.

One process, one event loop: a uvicorn server (HTTP) and a grpc.aio server share one
`Runtime` (model, batcher). Start-up order: settings (one line per bad `SSD_` variable, exit 2),
both ports bound exclusively (a busy port is named by its variable, exit 2), both servers
started so liveness answers, then the model loads (a missing or bad model file: one line
naming it, exit 2; there is no fallback to a random model unless SSD_ALLOW_RANDOM_MODEL) and
readiness (`/readyz`, gRPC health) turns true after warm-up. SIGTERM or SIGINT at any stage:
readiness false, new requests refused, accepted ones finish (up to `SSD_SHUTDOWN_GRACE_S`),
exit 0; a model still loading is abandoned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator

import uvicorn

from service.log_limits import install_repeat_filter
from service.settings import Settings, SettingsError, load_settings
from service.startup import StartupError, startup_work_running

logger = logging.getLogger("service")
EXIT_STARTUP_ERROR = 2


class HttpServer(uvicorn.Server):
    """uvicorn without its own signal handling: `serve()` below owns SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(settings: Settings) -> None:
    """Run both servers until SIGTERM / SIGINT, then drain and stop them.

    Raises:
        StartupError: a port cannot be bound or the model file cannot be served.
    """
    from service.errors import ModelLoadError, ModelNotFoundError
    from service.grpc_server import build_server, set_serving
    from service.http_app import create_app
    from service.http_protocol import uvicorn_config
    from service.model_file import ModelFileError
    from service.runtime import Runtime
    from service.security import check_tls_files
    from service.startup import bind_http_socket, probe_port

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    check_tls_files(settings)
    http_socket = bind_http_socket(settings.host, settings.http_port)
    runtime = Runtime(settings)
    try:
        if settings.grpc_port != 0:
            probe_port(settings.host, settings.grpc_port, "SSD_GRPC_PORT")
        grpc_server, grpc_port, health = build_server(
            runtime, f"{settings.host}:{settings.grpc_port}"
        )
    except (StartupError, RuntimeError) as error:
        http_socket.close()
        if isinstance(error, StartupError):
            raise
        raise StartupError(f"SSD_GRPC_PORT={settings.grpc_port}: {error}") from None
    await grpc_server.start()
    http_config = uvicorn_config(create_app(settings, runtime), settings)
    # After uvicorn.Config, which installs uvicorn's handlers: bound every handler's repeats.
    install_repeat_filter()
    http_server = HttpServer(http_config)
    http_task = asyncio.create_task(http_server.serve(sockets=[http_socket]), name="http")
    logger.info(
        "listening: HTTP on %s:%d, gRPC on port %d",
        settings.host,
        http_socket.getsockname()[1],
        grpc_port,
    )

    start_task = asyncio.create_task(runtime.start(), name="model-load")
    stop_task = asyncio.create_task(stop.wait())
    await asyncio.wait({start_task, stop_task, http_task}, return_when="FIRST_COMPLETED")
    if start_task.done() and start_task.exception() is None and not http_task.done():
        set_serving(health, True)
        await asyncio.wait({stop_task, http_task}, return_when="FIRST_COMPLETED")
        logger.info("signal received: draining")
    elif not start_task.done():
        logger.warning("stopping before the model was ready")
    set_serving(health, False)
    runtime.begin_shutdown()
    if not start_task.done():
        start_task.cancel()
    stop_task.cancel()
    await runtime.drain()
    await grpc_server.stop(grace=settings.shutdown_grace_s)
    http_server.should_exit = True
    await http_task
    failure = None if start_task.cancelled() else start_task.exception()
    if isinstance(failure, ModelFileError | ModelLoadError | ModelNotFoundError):
        # The message names the file; SSD_MODEL_PATH, when set, is the variable to fix.
        source = "" if settings.model_path is None else f"SSD_MODEL_PATH={settings.model_path}: "
        raise StartupError(f"{source}{failure}") from None
    if failure is not None:
        raise failure
    logger.info("stopped")


def main() -> None:
    """Console script `ssd-serve`: read `SSD_*` settings, serve until SIGTERM."""
    try:
        settings = load_settings()
    except SettingsError as error:
        for line in error.lines:
            print(f"ssd-serve: {line}", file=sys.stderr)
        sys.exit(EXIT_STARTUP_ERROR)
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logger.info("settings: %s", settings.model_dump_json())
    code = 0
    try:
        asyncio.run(serve(settings))
    except StartupError as error:
        print(f"ssd-serve: {error}", file=sys.stderr)
        code = EXIT_STARTUP_ERROR
    if startup_work_running():
        # A model load SIGTERM abandoned: interpreter shutdown would wait for its imports.
        logging.shutdown()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    main()
