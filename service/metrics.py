"""Prometheus metrics of one service instance, in a registry of its own.

A registry per instance (not the global default) lets tests run several apps in one process.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServiceMetrics:
    """Requests by protocol and status, latency, queue wait, batch size, inference time, load."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "ssd_requests",
            "Detection requests by protocol and final status (HTTP status or gRPC code name).",
            ("protocol", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "ssd_request_latency_seconds",
            "End-to-end detection latency, from request received to response ready.",
            ("protocol",),
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.queue_wait = Histogram(
            "ssd_queue_wait_seconds",
            "Time a request waited in the batcher queue before its batch started.",
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "ssd_batch_size",
            "Real (unpadded) requests per forward pass.",
            buckets=BATCH_SIZE_BUCKETS,
            registry=self.registry,
        )
        self.inference_time = Histogram(
            "ssd_inference_seconds",
            "Duration of one batched forward pass, including padding.",
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "ssd_queue_depth", "Requests waiting in the batcher queue.", registry=self.registry
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
            ("reason",),
            registry=self.registry,
        )

    def observe_request(self, protocol: str, status: str, seconds: float) -> None:
        """Count one finished request and its end-to-end latency."""
        self.requests.labels(protocol=protocol, status=status).inc()
        self.latency.labels(protocol=protocol).observe(seconds)

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)
