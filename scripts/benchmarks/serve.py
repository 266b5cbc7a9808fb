"""The served API under concurrent load: throughput and latency, dynamic batching on vs off.

Examples:
    python scripts/benchmark.py serve --protocol http --concurrency 1,4,16,64 --duration 10
    python scripts/benchmark.py serve --protocol grpc --model-path runs/ssd7.keras --out s.json
    python scripts/benchmark.py serve --protocol oip-grpc --concurrency 1,16   # KServe v2 gRPC
    python scripts/benchmark.py serve --quick   # tiny SSD7, concurrency 1,4, 1 s (tests)

For each batching setting (on: `--max-batch-size`; off: 1) the script starts `python -m service`
as a subprocess on free ports, waits for readiness, then for each concurrency level runs that
many closed-loop clients (each sends its next request when the previous one is answered) for
`--duration` seconds after a short warm-up, and reads the mean batch size from the service's
Prometheus metrics. Latency is client-side, end to end; errors are counted, not timed.
Protocols: `http` (POST /detect), `grpc` (ssd.v1.Detect), and the Open Inference Protocol as
tritonclient sends it: `oip-http` (POST /v2/models/{m}/infer, binary tensor data, binary
outputs) and `oip-grpc` (ModelInfer with raw_input_contents); one image per request.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger("benchmark.serve")

ROOT = Path(__file__).resolve().parents[2]
PROTOCOLS = ("http", "grpc", "oip-http", "oip-grpc")
QUICK = {"concurrency": "1,4", "duration": 1.0, "warmup": 0.3, "image_size": "120x160"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--protocol", choices=PROTOCOLS, default="http")
    parser.add_argument("--concurrency", default="1,4,16,64", help="comma-separated client counts")
    parser.add_argument("--duration", type=float, default=10.0, help="timed seconds per level")
    parser.add_argument("--warmup", type=float, default=2.0, help="untimed seconds per level")
    parser.add_argument("--model-path", type=Path, help="model to serve; default: embedded")
    parser.add_argument("--max-batch-size", type=int, default=16, help="batching-on batch size")
    parser.add_argument("--max-batch-delay-ms", type=float, default=0.0)
    parser.add_argument("--image-size", default="480x640", help="HxW of the client JPEG")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny run for tests: SSD7 at 64x96, 120x160 images, concurrency 1,4, 1 s per level",
    )


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    logger.info("configuration: %s", vars(args))
    levels = [int(c) for c in str(args.concurrency).split(",")]
    image = _client_image(args.image_size)
    with tempfile.TemporaryDirectory() as tmp:
        model_path = (
            _tiny_model(Path(tmp)) if args.quick and not args.model_path else args.model_path
        )
        rows = []
        for mode, batch_size in (("batching on", args.max_batch_size), ("batching off", 1)):
            with _Service(model_path, batch_size, args.max_batch_delay_ms) as service:
                for concurrency in levels:
                    row = asyncio.run(_measure(service, args, concurrency, image))
                    rows.append({"mode": mode, "max_batch_size": batch_size, **row})
                    logger.info("%s", rows[-1])
    print(_table(rows, args.protocol))
    print(f"\nmachine: {_cpu_name()}, {os.cpu_count()} logical CPUs, {platform.platform()}")
    if args.out:
        args.out.write_text(json.dumps({"protocol": args.protocol, "rows": rows}, indent=2))
    return 0 if all(r["requests"] > 0 for r in rows) else 1


class _Service:
    """`python -m service` on free ports; SIGTERM on exit."""

    def __init__(self, model_path: Path | None, max_batch_size: int, delay_ms: float) -> None:
        self.http_port, self.grpc_port = _free_port(), _free_port()
        self.env = {
            **os.environ,
            "SSD_HOST": "127.0.0.1",
            "SSD_HTTP_PORT": str(self.http_port),
            "SSD_GRPC_PORT": str(self.grpc_port),
            "SSD_MAX_BATCH_SIZE": str(max_batch_size),
            "SSD_MAX_BATCH_DELAY_MS": str(delay_ms),
            "SSD_MAX_QUEUE_SIZE": "1024",
            "SSD_LOG_LEVEL": "WARNING",
            "TF_CPP_MIN_LOG_LEVEL": "2",
        }
        if model_path is not None:
            self.env["SSD_MODEL_PATH"] = str(model_path)
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> _Service:
        import httpx

        self.process = subprocess.Popen([sys.executable, "-m", "service"], cwd=ROOT, env=self.env)
        end = time.monotonic() + 300
        while time.monotonic() < end:
            if self.process.poll() is not None:
                raise RuntimeError(f"service exited with code {self.process.returncode}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        raise RuntimeError("service did not become ready within 300 s")

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def batch_stats(self) -> tuple[float, float]:
        """(sum, count) of the ssd_batch_size histogram."""
        import httpx
        from prometheus_client.parser import text_string_to_metric_families

        values: dict[str, float] = {}
        for family in text_string_to_metric_families(httpx.get(f"{self.url}/metrics").text):
            for sample in family.samples:
                values[sample.name] = values.get(sample.name, 0.0) + sample.value  # all models
        return values.get("ssd_batch_size_sum", 0.0), values.get("ssd_batch_size_count", 0.0)


async def _measure(
    service: _Service, args: argparse.Namespace, concurrency: int, image: bytes
) -> dict[str, Any]:
    send, close = await _client(service, args.protocol, image)
    try:
        await _run_clients(send, concurrency, args.warmup)
        before = service.batch_stats()
        latencies, errors, elapsed = await _run_clients(send, concurrency, args.duration)
        after = service.batch_stats()
    finally:
        await close()
    batches = after[1] - before[1]
    lat_ms = np.array(latencies) * 1000.0 if latencies else np.array([np.nan])
    return {
        "protocol": args.protocol,
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": errors,
        "throughput_rps": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(lat_ms, 50)),
        "p95_ms": float(np.percentile(lat_ms, 95)),
        "p99_ms": float(np.percentile(lat_ms, 99)),
        "mean_batch": (after[0] - before[0]) / batches if batches else float("nan"),
    }


async def _run_clients(
    send: Any, concurrency: int, duration: float
) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()
    stop_at = start + duration

    async def client() -> None:
        nonlocal errors
        while time.perf_counter() < stop_at:
            sent = time.perf_counter()
            if await send():
                latencies.append(time.perf_counter() - sent)
            else:
                errors += 1

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return latencies, errors, time.perf_counter() - start


async def _client(service: _Service, protocol: str, image: bytes) -> tuple[Any, Any]:
    """(send, close): `send()` makes one request and returns whether it succeeded."""
    if protocol == "oip-http":
        return await _oip_http_client(service, image)
    if protocol == "oip-grpc":
        return await _oip_grpc_client(service, image)
    if protocol == "http":
        import httpx

        http = httpx.AsyncClient(
            base_url=service.url, timeout=60, limits=httpx.Limits(max_connections=1000)
        )

        async def send_http() -> bool:
            response = await http.post(
                "/detect", content=image, headers={"content-type": "image/jpeg"}
            )
            return response.status_code == 200

        return send_http, http.aclose

    import grpc

    from service._generated import detector_pb2, detector_pb2_grpc

    channel = grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}")
    stub = detector_pb2_grpc.DetectorStub(channel)
    request = detector_pb2.DetectRequest(image=image)

    async def send_grpc() -> bool:
        try:
            await stub.Detect(request, timeout=60)
        except grpc.aio.AioRpcError:
            return False
        return True

    return send_grpc, channel.close


def _served_model(service: _Service) -> str:
    import httpx

    return str(httpx.get(f"{service.url}/model", timeout=10).json()["name"])


async def _oip_http_client(service: _Service, image: bytes) -> tuple[Any, Any]:
    """OIP HTTP with binary tensor data, as tritonclient.http sends it (all outputs binary)."""
    import httpx

    from service.oip_tensors import join_bytes

    data = join_bytes([image])
    header = json.dumps({
        "inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [1],
                    "parameters": {"binary_data_size": len(data)}}],
        "parameters": {"binary_data_output": True},
    }).encode()  # fmt: skip
    body = header + data
    headers = {"Inference-Header-Content-Length": str(len(header))}
    path = f"/v2/models/{_served_model(service)}/infer"
    http = httpx.AsyncClient(
        base_url=service.url, timeout=60, limits=httpx.Limits(max_connections=1000)
    )

    async def send_oip_http() -> bool:
        response = await http.post(path, content=body, headers=headers)
        return response.status_code == 200

    return send_oip_http, http.aclose


async def _oip_grpc_client(service: _Service, image: bytes) -> tuple[Any, Any]:
    """OIP gRPC ModelInfer with the image in raw_input_contents, as tritonclient.grpc sends."""
    import grpc

    from service._generated import grpc_service_pb2, grpc_service_pb2_grpc
    from service.oip_tensors import join_bytes

    request = grpc_service_pb2.ModelInferRequest(model_name=_served_model(service))
    request.inputs.add(name="IMAGE", datatype="BYTES", shape=[1])
    request.raw_input_contents.append(join_bytes([image]))
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}")
    stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)

    async def send_oip_grpc() -> bool:
        try:
            await stub.ModelInfer(request, timeout=60)
        except grpc.aio.AioRpcError:
            return False
        return True

    return send_oip_grpc, channel.close


def _client_image(size: str) -> bytes:
    from PIL import Image

    height, width = (int(v) for v in size.lower().split("x"))
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _tiny_model(directory: Path) -> Path:
    import ssd_core

    path = directory / "tiny_ssd7.keras"
    config = ssd_core.SSDConfig.preset("ssd7", image_size=(64, 96))
    ssd_core.build_model(config, mode="inference").save(path)
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _table(rows: list[dict[str, Any]], protocol: str) -> str:
    lines = [
        f"| mode ({protocol}) | clients | req/s | p50 ms | p95 ms | p99 ms | mean batch | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['mode']} | {r['concurrency']} | {r['throughput_rps']:.1f} | {r['p50_ms']:.1f} "
            f"| {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {r['mean_batch']:.2f} | {r['errors']} |"
        )
    return "\n".join(lines)
