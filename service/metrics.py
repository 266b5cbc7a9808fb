"""Prometheus metrics of one service instance, in a registry of its own, and the per-model
statistics of the Open Inference Protocol's statistics extension, kept from the same numbers.

A registry per instance (not the global default) lets tests run several apps in one process.
Every per-request and per-batch series carries `model` and `version` labels (the repository
name and version); `ssd_in_flight_requests` stays one unlabelled gauge, the pod's load signal.
`ServiceMetrics.for_model(name, version)` gives a `ModelMetrics`: the labelled children for one
loaded model version plus its `InferStats` tallies, which `GET /v2/models/{m}/stats` reports.
"""

from __future__ import annotations

import copy
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
STAGE_BUCKETS_S = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST
MODEL_LABELS = ("model", "version")
NS_PER_S = 1_000_000_000
SUCCESS_STATUSES = frozenset({"200", "OK"})  # HTTP, gRPC


class ServiceMetrics:
    """Requests by protocol, model and status, latency, queue wait, batch size, inference time,
    queue depth, load."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "ssd_requests",
            "Detection requests by protocol, model and final status (HTTP status or gRPC code "
            "name); model and version are empty when the request named no servable model.",
            ("protocol", "status", *MODEL_LABELS),
            registry=self.registry,
        )
        self.latency = Histogram(
            "ssd_request_latency_seconds",
            "End-to-end detection latency, from request received to response ready.",
            ("protocol", *MODEL_LABELS),
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.queue_wait = Histogram(
            "ssd_queue_wait_seconds",
            "Time a request waited in the batcher queue before its batch started.",
            MODEL_LABELS,
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "ssd_batch_size",
            "Real (unpadded) requests per forward pass.",
            MODEL_LABELS,
            buckets=BATCH_SIZE_BUCKETS,
            registry=self.registry,
        )
        self.inference_time = Histogram(
            "ssd_inference_seconds",
            "Duration of one batched forward pass, including padding.",
            MODEL_LABELS,
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.stage_time = Histogram(
            "ssd_request_stage_seconds",
            "Where a successful detection's time went, per image: decode (image decoding and "
            "resizing, with the wait for a decode worker), queue (waiting for its batch), model "
            "(its batch's network pass), decoding (its batch's in-graph decoder, then its boxes "
            "to pixels), serialisation (the protocol's answer).",
            ("stage", *MODEL_LABELS),
            buckets=STAGE_BUCKETS_S,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "ssd_queue_depth",
            "Requests waiting in the batcher queue.",
            MODEL_LABELS,
            registry=self.registry,
        )
        # The per-pod load signal the Kubernetes autoscalers target (deploy/, README "Kubernetes").
        self.in_flight = Gauge(
            "ssd_in_flight_requests",
            "Images accepted by the request path and not yet answered (decoding, queued or "
            "in a forward pass), all protocols.",
            registry=self.registry,
        )
        self.dropped = Counter(
            "ssd_dropped_requests",
            "Requests dropped before compute: client went away (cancelled) or deadline passed.",
            ("reason", *MODEL_LABELS),
            registry=self.registry,
        )
        self._models: dict[tuple[str, str], ModelMetrics] = {}

    def for_model(self, name: str, version: str) -> ModelMetrics:
        """The metrics view of one model version (the same object on every call)."""
        key = (name, version)
        if key not in self._models:
            self._models[key] = ModelMetrics(self, name, version)
        return self._models[key]

    def observe_request(
        self, protocol: str, status: str, seconds: float, model: str = "", version: str = ""
    ) -> None:
        """Count one finished request and its end-to-end latency; a request of a loaded model
        version also counts in its statistics (success: status 200 or OK, else fail)."""
        self.requests.labels(protocol=protocol, status=status, model=model, version=version).inc()
        self.latency.labels(protocol=protocol, model=model, version=version).observe(seconds)
        view = self._models.get((model, version))
        if view is not None:
            view.observe_outcome(status in SUCCESS_STATUSES, seconds)

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)


@dataclass
class Duration:
    """A count and a total duration in nanoseconds (OIP `StatisticDuration`)."""

    count: int = 0
    ns: int = 0

    def add(self, seconds: float, count: int = 1) -> None:
        self.count += count
        self.ns += int(seconds * NS_PER_S)


@dataclass
class InferStats:
    """The statistics extension's numbers of one model version.

    `success`/`fail`: finished requests and their end-to-end durations; `queue`: time requests
    waited for their batch; `compute_infer`: forward passes (count = requests computed, ns =
    the passes' duration shared by their requests, as Triton counts it); `batches`: per real
    batch size, the number of passes and their total duration.
    """

    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    batches: dict[int, Duration] = field(default_factory=lambda: defaultdict(Duration))
    inference_count: int = 0  # images computed
    execution_count: int = 0  # forward passes
    last_inference_ms: int = 0  # wall-clock time of the last pass, ms since the epoch


class _Observer:
    """A labelled histogram child that also adds each observation to a `Duration`."""

    def __init__(self, child: object, tally: Duration | None) -> None:
        self._child = child
        self._tally = tally

    def observe(self, value: float) -> None:
        self._child.observe(value)  # type: ignore[attr-defined]
        if self._tally is not None:
            self._tally.add(value)


class _Dropped:
    def __init__(self, counter: Counter, name: str, version: str) -> None:
        self._counter, self._name, self._version = counter, name, version

    def labels(self, *, reason: str) -> Counter:
        return self._counter.labels(reason=reason, model=self._name, version=self._version)


class ModelMetrics:
    """What the batcher and the request path record for one model version: the labelled
    Prometheus children and the `InferStats` of the statistics extension."""

    def __init__(self, service: ServiceMetrics, name: str, version: str) -> None:
        self.service = service
        self.name = name
        self.version = version
        self.stats = InferStats()
        self._lock = threading.Lock()  # batches finish in the batcher's worker thread
        labels = {"model": name, "version": version}
        self.queue_depth = service.queue_depth.labels(**labels)
        self.queue_wait = _Observer(service.queue_wait.labels(**labels), self.stats.queue)
        self.inference_time = _Observer(service.inference_time.labels(**labels), None)
        self._batch_size = service.batch_size.labels(**labels)
        self._stage_time = service.stage_time
        self.dropped = _Dropped(service.dropped, name, version)

    def observe_stages(self, seconds: dict[str, float]) -> None:
        """Where one request's time went (stage name -> seconds, `service.runtime.STAGES`)."""
        for stage, value in seconds.items():
            self._stage_time.labels(stage=stage, model=self.name, version=self.version).observe(
                value
            )

    def observe_batch(self, size: int, seconds: float) -> None:
        """One successful forward pass over `size` real requests that took `seconds`."""
        self._batch_size.observe(size)
        with self._lock:
            self.stats.batches[size].add(seconds)
            self.stats.compute_infer.add(seconds, count=size)
            self.stats.inference_count += size
            self.stats.execution_count += 1
            self.stats.last_inference_ms = int(time.time() * 1000)

    def observe_request(self, protocol: str, status: str, seconds: float) -> None:
        """One finished request of this model version (Prometheus and statistics)."""
        self.service.observe_request(protocol, status, seconds, self.name, self.version)

    def observe_outcome(self, ok: bool, seconds: float) -> None:
        """The statistics side of one finished request (`ServiceMetrics.observe_request`)."""
        with self._lock:
            (self.stats.success if ok else self.stats.fail).add(seconds)

    def snapshot(self) -> InferStats:
        """A consistent copy of the statistics (batches finish in another thread)."""
        with self._lock:
            return copy.deepcopy(self.stats)
