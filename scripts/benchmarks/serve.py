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
Prometheus metrics and the CPU cores the service process and these clients kept busy (the
clients share the machine). Latency is client-side, end to end; errors are counted, not timed.
Protocols: `http` (POST /detect), `grpc` (ssd.v1.Detect), and the Open Inference Protocol as
tritonclient sends it: `oip-http` (POST /v2/models/{m}/infer, binary tensor data, binary
outputs) and `oip-grpc` (ModelInfer with raw_input_contents); one image per request.

Where a request's time goes: each row also gives the server-side mean of every stage
(`ssd_request_stage_seconds` from `/metrics`: decode, queue, model, decoding, serialisation;
ms per request over the timed window). The engine is the service's (`--engine`,
`--precision`: SSD_ENGINE / SSD_PRECISION; default: the service's `auto`). Before and after
the services run, the benchmark times the same model on the same engine in its own process
(`Engine.run` at the service's default threshold 0.3: batch 1 ms and batch 16 images/s) and
the client image's decode + resize (`Predictor.prepare`), and prints the service against
them: one-client latency / (model batch 1 + image), throughput / model batch-16 images/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from service_process import ServiceProcess, free_port

from benchmarks.grpc_floor import echo_server
from benchmarks.photos import photo_jpeg

logger = logging.getLogger("benchmark.serve")

ROOT = Path(__file__).resolve().parents[2]
PROTOCOLS = ("http", "grpc", "oip-http", "oip-grpc")
QUICK = {"concurrency": "1,4", "duration": 1.0, "warmup": 0.3, "image_size": "120x160"}
# The request stages the service times (`service.runtime.STAGES`).
STAGES = ("decode", "queue", "model", "decoding", "serialisation")
# The reference's batch-1 calls after idling: about a one-client request's gap between passes.
IDLE_S = 0.005
IDLE_CALLS = 100


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--protocol", choices=PROTOCOLS, default="http")
    parser.add_argument("--concurrency", default="1,4,16,64", help="comma-separated client counts")
    parser.add_argument("--duration", type=float, default=10.0, help="timed seconds per level")
    parser.add_argument("--warmup", type=float, default=2.0, help="untimed seconds per level")
    parser.add_argument("--model-path", type=Path, help="model to serve; default: embedded")
    parser.add_argument("--max-batch-size", type=int, default=16, help="batching-on batch size")
    parser.add_argument("--max-batch-delay-ms", type=float, default=0.0)
    parser.add_argument("--image-size", default="480x640", help="HxW of the client JPEG")
    parser.add_argument("--engine", help="SSD_ENGINE of the service; default: its default (auto)")
    parser.add_argument("--precision", help="SSD_PRECISION of the service")
    parser.add_argument(
        "--no-reference", action="store_true", help="skip timing the model in this process"
    )
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny run for tests: SSD7 at 64x96, 120x160 images, concurrency 1,4, 1 s per level",
    )


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
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
        reference: list[dict[str, Any]] = []
        rows = []
        for mode, batch_size in (("batching on", args.max_batch_size), ("batching off", 1)):
            log = Path(tmp) / f"service-batch{batch_size}.log"
            with _service(model_path, batch_size, args.max_batch_delay_ms, args, log) as service:
                engine = _engine(service)
                if not args.no_reference and not reference:  # the service idles meanwhile
                    reference.append(_reference(model_path, engine, image))
                for concurrency in levels:
                    row = asyncio.run(_measure(service, args, concurrency, image))
                    rows.append({"mode": mode, "max_batch_size": batch_size, **row})
                    logger.info("%s", rows[-1])
        if reference:
            reference.append(_reference(model_path, engine, image))
    floor = _grpc_floor(args, levels, image) if args.protocol == "grpc" and reference else []
    print(_table(rows, args.protocol))
    print(f"\nengine: {engine['detail']}")
    from ssd_core.engines.host import cpu_name

    print(f"machine: {cpu_name()}, {os.cpu_count()} logical CPUs, {platform.platform()}")
    summary = _against_reference(rows, reference, floor)
    for line in summary.get("lines", []):
        print(line)
    if args.out:
        report = {
            "protocol": args.protocol,
            "engine": engine,
            "rows": rows,
            "reference": reference,
            "grpc_floor": floor,
            "summary": {k: v for k, v in summary.items() if k != "lines"},
        }
        args.out.write_text(json.dumps(report, indent=2))
    return 0 if all(r["requests"] > 0 for r in rows) else 1


def _reference(model_path: Path | None, served: dict[str, str], image: bytes) -> dict[str, Any]:
    """The served model on the service's engine (`served`: /model's `engine`) in this
    process: batch-1 ms, batch-16 images/s (at the service's default threshold 0.3), and the
    client image's decode + resize ms, each the best of 5 rounds of about a second; the CPU
    time a batch-16 image costs (this process's, all threads); and the median batch-1 ms of
    calls that each follow `IDLE_S` of idling, as a lone client's request finds the engine
    (its threads asleep, its caches cold) where back-to-back calls keep it warm."""
    import ssd_core
    from ssd_core.engines import create_engine
    from ssd_core.engines.auto import best_seconds_per_call
    from ssd_core.inference import Predictor, load_inference_model

    path = model_path or ssd_core.default_model_path()
    model = load_inference_model(path)
    engine = create_engine(model, served["name"], served["precision"], model_path=path)
    predictor = Predictor(engine)
    height, width = predictor.input_size
    threshold = max(0.3, model.decoder_config.score_threshold)
    batches = {size: np.zeros((size, height, width, 3), np.uint8) for size in (1, 16)}
    prepared = predictor.prepare(image)[0]
    for batch in batches.values():
        batch[:] = prepared
        predictor.run(batch, threshold)  # warm-up: tracing and XLA compilation
    seconds = {
        "batch1": best_seconds_per_call(lambda: predictor.run(batches[1], threshold), 5, 1.0),
        "batch16": best_seconds_per_call(lambda: predictor.run(batches[16], threshold), 5, 1.0),
        "image": best_seconds_per_call(lambda: predictor.prepare(image), 5, 1.0),
    }
    cpu_started, batch16_calls = time.process_time(), 0
    wall_end = time.perf_counter() + 1.0
    while time.perf_counter() < wall_end:
        predictor.run(batches[16], threshold)
        batch16_calls += 1
    cpu_per_image = (time.process_time() - cpu_started) / (16 * batch16_calls)
    after_idle = []
    for _ in range(IDLE_CALLS):
        time.sleep(IDLE_S)
        started = time.perf_counter()
        predictor.run(batches[1], threshold)
        after_idle.append(time.perf_counter() - started)
    return {
        "engine": engine.describe(),
        "batch1_ms": 1000 * seconds["batch1"],
        "batch1_after_idle_ms": 1000 * float(np.median(after_idle)),
        "batch16_images_per_second": 16 / seconds["batch16"],
        "batch16_cpu_ms_per_image": 1000 * cpu_per_image,
        "image_ms": 1000 * seconds["image"],
    }


def _against_reference(
    rows: list[dict[str, Any]], reference: list[dict[str, Any]], floor: list[dict[str, Any]]
) -> dict[str, Any]:
    """The service against the model's own numbers (the mean of the runs before and after),
    and, given the gRPC floor (`_grpc_floor`), the best the service could do if it added
    nothing of its own to the image decoding, the model and the bare call."""
    if not reference:
        return {}

    def mean(key: str) -> float:
        return float(np.mean([r[key] for r in reference]))

    batch1, batch16, image_ms = (
        mean("batch1_ms"),
        mean("batch16_images_per_second"),
        mean("image_ms"),
    )
    summary: dict[str, Any] = {
        "model_batch1_ms": batch1,
        "model_batch1_after_idle_ms": mean("batch1_after_idle_ms"),
        "model_batch16_images_per_second": batch16,
        "model_batch16_cpu_ms_per_image": mean("batch16_cpu_ms_per_image"),
        "image_ms": image_ms,
        "lines": [
            f"model in this process ({reference[0]['engine']}): batch 1 {batch1:.2f} ms "
            f"({mean('batch1_after_idle_ms'):.2f} ms after {IDLE_S * 1000:.0f} ms idle), "
            f"batch 16 {batch16:.1f} images/s at {mean('batch16_cpu_ms_per_image'):.2f} CPU ms "
            f"per image; client image decode + resize {image_ms:.2f} ms (mean of before and "
            "after the services ran)"
        ],
    }
    on = [r for r in rows if r["mode"] == "batching on"]
    one = next((r for r in on if r["concurrency"] == 1), None)
    if one is not None:
        ratio = one["p50_ms"] / (batch1 + image_ms)
        summary["one_client_p50_over_model_and_image"] = ratio
        idle_ratio = one["p50_ms"] / (summary["model_batch1_after_idle_ms"] + image_ms)
        summary["one_client_p50_over_model_after_idle_and_image"] = idle_ratio
        summary["lines"].append(
            f"one client: p50 {one['p50_ms']:.2f} ms = {ratio:.2f}x (model batch 1 + image "
            f"{batch1 + image_ms:.2f} ms); {idle_ratio:.2f}x against the model after idling"
        )
    most = max(on, key=lambda r: r["concurrency"], default=None)
    if most is not None and most["concurrency"] > 1:
        ratio = most["throughput_rps"] / batch16
        summary["throughput_over_model_batch16"] = ratio
        summary["lines"].append(
            f"{most['concurrency']} clients: {most['throughput_rps']:.1f} req/s = {ratio:.2f}x "
            f"the model's batch-16 {batch16:.1f} images/s"
        )
        cores = os.cpu_count() or 1
        left = _cores_left(most, cores) / cores
        if left > 0:
            summary["throughput_over_model_batch16_per_cpu_left"] = ratio / left
            summary["lines"].append(
                f"  the clients themselves kept {most['client_cores']:.2f} of the {cores} cores "
                f"busy (the service {most['service_cores']:.2f}); against the model's batch-16 "
                f"rate on the {left:.0%} of the machine they left: {ratio / left:.2f}x"
            )
        budget = _cpu_budget(most, summary, cores)
        summary.update(budget)
        summary["lines"].append(
            f"  CPU per request: the service {budget['service_cpu_ms_per_request']:.2f} ms, of "
            f"which the model's batch-16 pass costs {summary['model_batch16_cpu_ms_per_image']:.2f}"
            f" alone; the other {budget['other_cpu_ms_per_request']:.2f} ms (image decode + "
            f"resize {image_ms:.2f} alone, protocol, event loop, batching) leave room for at "
            f"most {budget['throughput_ceiling_rps']:.1f} req/s on the cores the clients left "
            f"= {budget['throughput_ceiling_over_model_batch16']:.2f}x"
        )
    if floor:
        bounds, lines = _floor_bounds(summary, floor, most, cores=os.cpu_count() or 1)
        summary.update(bounds)
        summary["lines"].extend(lines)
    return summary


def _floor_bounds(
    summary: dict[str, Any], floor: list[dict[str, Any]], most: dict[str, Any] | None, cores: int
) -> tuple[dict[str, float], list[str]]:
    """The bounds of a service that adds nothing to the model, the image and a bare call: one
    client waits for the model after idling, the image and the bare round trip; many clients
    cost the model's CPU per image, the image's and the bare call's server CPU per request."""
    one, many = floor[0], floor[-1]
    one_ms = summary["model_batch1_after_idle_ms"] + summary["image_ms"] + one["p50_ms"]
    bare_cpu_ms = _cpu_ms_per_request(many)
    bounds = {
        "floor_one_client_p50_ms": one["p50_ms"],
        "floor_cpu_ms_per_request": bare_cpu_ms,
        "best_one_client_over_model_and_image": one_ms
        / (summary["model_batch1_ms"] + summary["image_ms"]),
    }
    lines = [
        f"bare gRPC (the same clients and image, `Detect` answered at once by an empty "
        f"grpc.aio server): {one['concurrency']} client p50 {one['p50_ms']:.2f} ms; "
        f"{many['concurrency']} clients {many['throughput_rps']:.0f} req/s at "
        f"{bare_cpu_ms:.2f} server CPU ms per request",
        f"  a service adding nothing to that, the image and the model: one client "
        f"{one_ms:.2f} ms (model after idling + image + bare call) = "
        f"{bounds['best_one_client_over_model_and_image']:.2f}x",
    ]
    if most is not None and most["concurrency"] > 1:
        per_request = summary["model_batch16_cpu_ms_per_image"] + summary["image_ms"] + bare_cpu_ms
        best_rps = 1000 * _cores_left(most, cores) / per_request
        bounds["best_throughput_over_model_batch16"] = (
            best_rps / summary["model_batch16_images_per_second"]
        )
        lines.append(
            f"  {most['concurrency']} clients: {per_request:.2f} CPU ms per request (model + "
            f"image + bare call) allow {best_rps:.1f} req/s on the cores the clients left = "
            f"{bounds['best_throughput_over_model_batch16']:.2f}x"
        )
    return bounds, lines


def _cpu_budget(row: dict[str, Any], summary: dict[str, Any], cores: int) -> dict[str, float]:
    """Where the service's CPU goes per request at `row`'s load, against the model's own CPU
    per image: the throughput that per-request CPU allows on the cores the clients left (the
    ceiling a perfectly scheduled service would reach)."""
    service_ms = _cpu_ms_per_request(row)
    ceiling_rps = 1000 * _cores_left(row, cores) / service_ms
    return {
        "service_cpu_ms_per_request": service_ms,
        "other_cpu_ms_per_request": service_ms - summary["model_batch16_cpu_ms_per_image"],
        "throughput_ceiling_rps": ceiling_rps,
        "throughput_ceiling_over_model_batch16": ceiling_rps
        / summary["model_batch16_images_per_second"],
    }


def _cpu_ms_per_request(row: dict[str, Any]) -> float:
    """The server's CPU ms per answered request over a row's timed window."""
    return float(1000 * row["service_cores"] / row["throughput_rps"])


def _cores_left(row: dict[str, Any], cores: int) -> float:
    """The cores a row's clients left to the server."""
    return max(cores - row["client_cores"], 0.0)


def _service(
    model_path: Path | None,
    max_batch_size: int,
    delay_ms: float,
    args: argparse.Namespace,
    log: Path,
) -> ServiceProcess:
    """The service to measure (not started): batching as given, a queue long enough for every
    client, warnings-only logging into `log`."""
    settings: dict[str, Any] = {
        "max_batch_size": max_batch_size,
        "max_batch_delay_ms": delay_ms,
        "max_queue_size": 1024,
        "log_level": "WARNING",
    }
    if model_path is not None:
        settings["model_path"] = model_path
    if args.engine:
        settings["engine"] = args.engine
    if args.precision:
        settings["precision"] = args.precision
    return ServiceProcess(settings, log)


def _engine(service: ServiceProcess) -> dict[str, str]:
    """What runs the served model (`GET /model`: engine name, precision, detail)."""
    engine: dict[str, str] = json.loads(service.get("/model")[1])["engine"]
    return engine


def _stats(service: ServiceProcess) -> dict[str, float]:
    """Sums and counts of the batch-size and stage histograms, over all models: keys
    `batch_sum`, `batch_count`, `<stage>_sum`, `<stage>_count`."""
    values: dict[str, float] = {}
    for (name, labels), value in service.metrics().items():
        if name.startswith("ssd_batch_size_"):
            values["batch_" + name.rsplit("_", 1)[1]] = value
        elif name.startswith("ssd_request_stage_seconds_"):
            values[f"{dict(labels)['stage']}_{name.rsplit('_', 1)[1]}"] = value
    return values


def _grpc_floor(args: argparse.Namespace, levels: list[int], image: bytes) -> list[dict[str, Any]]:
    """The same gRPC clients against `benchmarks.grpc_floor`'s echo server, at the fewest and
    the most clients: `_timed_load`'s rows (latency, the echo server's and clients' cores)."""
    rows = []
    with echo_server(free_port()) as echo:
        for concurrency in sorted({min(levels), max(levels)}):
            row = asyncio.run(
                _measure_floor(echo.grpc_port, echo.cpu_seconds, concurrency, image, args)
            )
            rows.append(row)
            logger.info("grpc floor: %s", row)
    return rows


async def _measure_floor(
    port: int, server_cpu: Any, concurrency: int, image: bytes, args: argparse.Namespace
) -> dict[str, Any]:
    send, close = await _grpc_client(port, image)
    row, _ = await _timed_load(send, close, concurrency, args, server_cpu)
    return row


async def _measure(
    service: ServiceProcess, args: argparse.Namespace, concurrency: int, image: bytes
) -> dict[str, Any]:
    send, close = await _client(service, args.protocol, image)
    row, delta = await _timed_load(
        send, close, concurrency, args, service.cpu_seconds, lambda: _stats(service)
    )
    batches = delta.get("batch_count", 0.0)
    stages = {
        f"{stage}_ms": 1000 * delta[f"{stage}_sum"] / delta[f"{stage}_count"]
        if delta.get(f"{stage}_count")
        else float("nan")
        for stage in STAGES
    }
    return {
        "protocol": args.protocol,
        **row,
        "mean_batch": delta["batch_sum"] / batches if batches else float("nan"),
        **stages,
    }


async def _timed_load(
    send: Any,
    close: Any,
    concurrency: int,
    args: argparse.Namespace,
    server_cpu: Any,
    stats: Any = None,
) -> tuple[dict[str, Any], dict[str, float]]:
    """`concurrency` closed-loop clients: `args.warmup` untimed, then `args.duration` timed;
    `close` after. Returns the row (requests, errors, throughput, latency percentiles, the CPU
    cores the server (`server_cpu()`: its CPU seconds) and these clients kept busy) and the
    change of `stats()` (a dict of counters) over the timed window ({} without it)."""
    try:
        await _run_clients(send, concurrency, args.warmup)
        before = stats() if stats else {}
        cpu_before = (server_cpu(), time.process_time())
        latencies, errors, elapsed = await _run_clients(send, concurrency, args.duration)
        cpu_after = (server_cpu(), time.process_time())
        after = stats() if stats else {}
    finally:
        await close()
    lat_ms = np.array(latencies) * 1000.0 if latencies else np.array([np.nan])
    row = {
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": errors,
        "throughput_rps": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(lat_ms, 50)),
        "p95_ms": float(np.percentile(lat_ms, 95)),
        "p99_ms": float(np.percentile(lat_ms, 99)),
        # CPU cores busy on average over the timed window: the server, and these clients.
        "service_cores": (cpu_after[0] - cpu_before[0]) / elapsed,
        "client_cores": (cpu_after[1] - cpu_before[1]) / elapsed,
    }
    return row, {key: value - before.get(key, 0.0) for key, value in after.items()}


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


async def _client(service: ServiceProcess, protocol: str, image: bytes) -> tuple[Any, Any]:
    """(send, close): `send()` makes one request and returns whether it succeeded."""
    if protocol == "oip-http":
        return await _oip_http_client(service, image)
    if protocol == "oip-grpc":
        return await _oip_grpc_client(service, image)
    if protocol == "http":
        return _http_client(service, "/detect", image, {"content-type": "image/jpeg"})

    return await _grpc_client(service.grpc_port, image)


async def _grpc_client(port: int, image: bytes) -> tuple[Any, Any]:
    """(send, close) of `ssd.v1.Detector/Detect` calls with `image` on `port`."""
    import grpc

    from service._generated import detector_pb2, detector_pb2_grpc

    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = detector_pb2_grpc.DetectorStub(channel)
    request = detector_pb2.DetectRequest(image=image)

    async def send_grpc() -> bool:
        try:
            await stub.Detect(request, timeout=60)
        except grpc.aio.AioRpcError:
            return False
        return True

    return send_grpc, channel.close


def _served_model(service: ServiceProcess) -> str:
    return str(json.loads(service.get("/model")[1])["name"])


async def _oip_http_client(service: ServiceProcess, image: bytes) -> tuple[Any, Any]:
    """OIP HTTP with binary tensor data, as tritonclient.http sends it (all outputs binary)."""
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
    return _http_client(service, path, body, headers)


def _http_client(
    service: ServiceProcess, path: str, body: bytes, headers: dict[str, str]
) -> tuple[Any, Any]:
    """(send, close) of keep-alive POSTs of `body` to `path`, one connection per client.

    aiohttp rather than httpx: on the two cores the service shares with its clients, httpx
    took 0.2 cores for one client (aiohttp 0.07) and 1.5-2.5 ms of every one-client request.
    """
    import aiohttp

    session = aiohttp.ClientSession(
        base_url=service.url,
        connector=aiohttp.TCPConnector(limit=0),  # no pool limit: one connection per client
        timeout=aiohttp.ClientTimeout(total=60),
    )

    async def send() -> bool:
        try:
            async with session.post(path, data=body, headers=headers) as response:
                await response.read()
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    return send, session.close


async def _oip_grpc_client(service: ServiceProcess, image: bytes) -> tuple[Any, Any]:
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
    height, width = (int(v) for v in size.lower().split("x"))
    return photo_jpeg(height, width)


def _tiny_model(directory: Path) -> Path:
    import ssd_core

    path = directory / "tiny_ssd7.keras"
    config = ssd_core.SSDConfig.preset("ssd7", image_size=(64, 96))
    ssd_core.build_model(config, mode="inference").save(path)
    return path


def _ms(value: float) -> str:
    """A stage's ms, or "-" where the protocol does not measure it (NaN)."""
    return "-" if math.isnan(value) else f"{value:.2f}"


def _table(rows: list[dict[str, Any]], protocol: str) -> str:
    lines = [
        f"| mode ({protocol}) | clients | req/s | p50 ms | p95 ms | p99 ms | mean batch | errors "
        "| service / client cores | decode | queue | model | decoding | serialisation |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        stages = " | ".join(_ms(r[f"{stage}_ms"]) for stage in STAGES)
        lines.append(
            f"| {r['mode']} | {r['concurrency']} | {r['throughput_rps']:.1f} | {r['p50_ms']:.1f} "
            f"| {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {r['mean_batch']:.2f} | {r['errors']} "
            f"| {r['service_cores']:.2f} / {r['client_cores']:.2f} | {stages} |"
        )
    lines.append("(the last five columns: server-side ms per request, ssd_request_stage_seconds)")
    return "\n".join(lines)
