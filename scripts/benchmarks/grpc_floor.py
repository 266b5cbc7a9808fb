"""The floor of a gRPC request in this stack: `ssd.v1.Detector/Detect` answered at once.

A `grpc.aio` server whose `Detect` returns an empty `DetectResponse` without looking at the
image: what the same clients, sending the same image, measure when the service does no work of
its own (no decoding, queueing, model or response building). `scripts/benchmarks/serve.py`
runs it beside the service and prints the service's bounds against it.

Run alone: `python -m benchmarks.grpc_floor PORT` (from `scripts/`, the project root on the
path); it serves until SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from service_process import cpu_seconds, stop

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 60.0


async def serve(port: int) -> None:
    """Serve `Detect` -> an empty response carrying the request's id, until SIGTERM."""
    import grpc

    from service._generated import detector_pb2, detector_pb2_grpc

    class EchoDetector(detector_pb2_grpc.DetectorServicer):
        async def Detect(self, request, context):  # type: ignore[no-untyped-def] # noqa: N802
            return detector_pb2.DetectResponse(request_id=request.request_id)

    server = grpc.aio.server()
    detector_pb2_grpc.add_DetectorServicer_to_server(EchoDetector(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(grace=None)


class EchoServer:
    """The echo server in a subprocess on `grpc_port`."""

    def __init__(self, grpc_port: int) -> None:
        self.grpc_port = grpc_port
        self.process: subprocess.Popen[bytes] | None = None

    def cpu_seconds(self) -> float:
        assert self.process is not None
        return cpu_seconds(self.process.pid)


@contextlib.contextmanager
def echo_server(grpc_port: int) -> Iterator[EchoServer]:
    """Start the echo server, wait until its port answers, SIGTERM it on exit."""
    server = EchoServer(grpc_port)
    paths = os.pathsep.join([str(ROOT), str(ROOT / "scripts")])
    env = {**os.environ, "PYTHONPATH": paths}
    command = [sys.executable, "-m", "benchmarks.grpc_floor", str(grpc_port)]
    server.process = subprocess.Popen(command, cwd=ROOT, env=env)
    try:
        _wait_until_serving(server.process, grpc_port)
        yield server
    finally:
        stop(server.process)


def _wait_until_serving(process: subprocess.Popen[bytes], port: int) -> None:
    import grpc

    end = time.monotonic() + READY_TIMEOUT_S
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        while time.monotonic() < end:
            if process.poll() is not None:
                raise RuntimeError(f"the echo server exited with code {process.returncode}")
            try:
                grpc.channel_ready_future(channel).result(timeout=0.5)
                return
            except grpc.FutureTimeoutError:
                continue
    raise RuntimeError(f"the echo server did not serve within {READY_TIMEOUT_S:.0f} s")


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
