"""Stress the service as hostile clients would (issue 12), in bounded time, on loopback only.

Starts `python -m service` (the shipped model unless --model-path) and runs, in order:
  stream       streams of distinct images with bad items mixed in, unary calls at the same
               time, a stream with an undecodable message and one with an oversize message;
               every answer checked against the same image's answer taken alone
  abort        clients that send a whole POST /detect and hang up at once (1000 a second;
               abort-max: as fast as they can)
  connections  idle connections above the limits on both ports, health probed meanwhile
  overload     more concurrent requests than the queue holds; how fast refusals come back
               (clients wait Retry-After / 1 s after a refusal; overload-max: they hammer)
and prints, per scenario: sent / answered / wrong / missing, the p99 latency of a concurrent
good request (a POST /detect every 100 ms) and the service's RSS before and after.

Examples:
    python scripts/stress.py --quick                 # the test suite's small run
    python scripts/stress.py --out stress.json       # full sizes (a few minutes)
    python scripts/stress.py --scenarios abort,overload --check
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service_process import ServiceProcess  # noqa: E402
from stressing.scenarios import FULL, QUICK, SCENARIOS  # noqa: E402

logger = logging.getLogger("stress")
MAX_IMAGE_BYTES = 1024 * 1024  # small, so that the over-limit stream item is cheap to send


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (the test suite's)")
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help=f"comma-separated: {','.join(SCENARIOS)}"
    )
    parser.add_argument("--model-path", type=Path, help="a .keras model (default: shipped)")
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if an acceptance bound of issue 12 fails"
    )
    args = parser.parse_args(argv)
    unknown = set(args.scenarios.split(",")) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}; choose from {sorted(SCENARIOS)}")
    return args


def service_settings(quick: bool, model_path: Path | None) -> dict[str, Any]:
    """SSD_* settings of the service under test (only those this version of it knows)."""
    from service.settings import Settings

    wanted: dict[str, Any] = {"max_image_bytes": MAX_IMAGE_BYTES}
    if quick:  # limits low enough that the quick flood crosses them
        wanted |= {"http_max_connections": 100, "grpc_max_connections": 100}
    if model_path is not None:
        wanted["model_path"] = model_path
    return {name: value for name, value in wanted.items() if name in Settings.model_fields}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    sizes = QUICK if args.quick else FULL
    settings = service_settings(args.quick, args.model_path)
    logger.info("sizes %s, service settings %s", sizes, settings)
    rows = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        ServiceProcess(settings, Path(tmp) / "service.log") as server,
    ):
        warm_up(server)
        start = {
            "rss_mb": server.rss_mb(),
            "fds": server.open_fds(),
            "threads": server.threads(),
        }
        for name in args.scenarios.split(","):
            logger.info("scenario %s", name)
            if name == "stream":
                rows.append(SCENARIOS[name](server, sizes, MAX_IMAGE_BYTES))
            else:
                rows.append(SCENARIOS[name](server, sizes))
            logger.info("%s", rows[-1])
        end = {"rss_mb": server.rss_mb(), "fds": server.open_fds(), "threads": server.threads()}
    report = {"sizes": sizes.__dict__, "settings": _jsonable(settings), "start": start,
              "end": end, "rows": rows}  # fmt: skip
    print(table(rows, start, end))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    failures = check(rows, start, end) if args.check else []
    for failure in failures:
        print(f"FAILED: {failure}")
    return 1 if failures else 0


def warm_up(server: ServiceProcess, count: int = 20) -> None:
    """Requests of both protocols before the baseline, so that RSS before counts the memory
    every serving process holds (allocator pools, gRPC and HTTP buffers)."""
    import grpc
    from stressing.scenarios import scene_jpegs, unloaded_latency

    from service._generated import detector_pb2, detector_pb2_grpc

    images = scene_jpegs(count, seed=5)
    unloaded_latency(server, images[0], count)
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = detector_pb2_grpc.DetectorStub(channel)
        for image in images:
            stub.Detect(detector_pb2.DetectRequest(image=image), timeout=60)


def _jsonable(settings: dict[str, Any]) -> dict[str, Any]:
    return {
        name: str(value) if isinstance(value, Path) else value for name, value in settings.items()
    }


def table(rows: list[dict[str, Any]], start: dict, end: dict) -> str:
    """The summary table, then each scenario's details."""
    lines = [
        "| scenario | sent | answered | wrong | missing | good request p99 ms "
        "| RSS before -> after MB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['scenario']} | {row['sent']} | {row['answered']} | {row['wrong']} | "
            f"{row['missing']} | {row.get('probe_p99_ms', '-')} | "
            f"{row['rss_before_mb']} -> {row['rss_after_mb']} |"
        )
    lines.append(
        f"\nservice RSS {start['rss_mb']:.1f} -> {end['rss_mb']:.1f} MB, "
        f"fds {start['fds']} -> {end['fds']}, threads {start['threads']} -> {end['threads']}"
    )
    for row in rows:
        details = {k: v for k, v in row.items() if k not in ("scenario", "sent", "answered")}
        lines.append(f"{row['scenario']}: " + ", ".join(f"{k}={v}" for k, v in details.items()))
    return "\n".join(lines)


def check(rows: list[dict[str, Any]], start: dict, end: dict) -> list[str]:
    """The acceptance bounds of issue 12 that these rows measure; the ones that fail."""
    failures = []
    for row in rows:
        kind = row["scenario"]
        if kind == "stream":
            if row["wrong"] or row["missing"] or row["duplicated"]:
                failures.append(f"stream: {row['wrong']} wrong, {row['missing']} missing")
            if set(row["stream_statuses"]) != {"OK"}:
                failures.append(f"stream statuses {row['stream_statuses']}")
            if row["bad_items_answered_invalid_argument"] != row["bad_items"]:
                failures.append("stream: a bad item was not answered INVALID_ARGUMENT")
            if row["malformed_stream_status"] != "INVALID_ARGUMENT":
                failures.append(f"malformed stream ended {row['malformed_stream_status']}")
        elif kind.startswith("abort"):
            if kind == "abort" and row["probe_p99_ms"] > row["probe_bound_ms"]:
                failures.append(
                    f"abort: good request p99 {row['probe_p99_ms']} ms > "
                    f"{row['probe_bound_ms']} ms (2x unloaded p99 + one batch)"
                )
            if row["log_tracebacks"]:
                failures.append(f"abort: {row['log_tracebacks']} tracebacks in the log")
            # At the maximum rate most connections close before the server has read their
            # request: nothing to count, nothing computed.
            accounted = row["counted_499"] + row["counted_503"] + row["images_computed"]
            if kind == "abort" and accounted < row["sent"]:
                failures.append(f"{kind}: {row['sent'] - accounted} aborted requests unaccounted")
        elif kind == "connections":
            if row["healthz_failures"] or row["healthz_p99_ms"] > 100:
                failures.append(
                    f"connections: /healthz p99 {row['healthz_p99_ms']} ms, "
                    f"{row['healthz_failures']} failed"
                )
        elif kind == "overload":
            for key in ("http_503_p99_ms", "grpc_exhausted_p99_ms"):
                if row[key] > 50:
                    failures.append(f"overload: {key} = {row[key]} > 50")
    if end["rss_mb"] > 1.10 * start["rss_mb"]:
        failures.append(f"RSS {start['rss_mb']:.0f} -> {end['rss_mb']:.0f} MB (> +10%)")
    return failures


if __name__ == "__main__":
    sys.exit(main())
