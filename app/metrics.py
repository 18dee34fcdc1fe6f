"""Prometheus metrics of one process: HTTP traffic, the encoder's batches, the index cache."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from retrieval.batching import BatchStats
from retrieval.index import CacheStats

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    """The service's metrics, in a registry of its own (one per app instance)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "rapport_http_requests_total",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "rapport_http_request_duration_seconds",
            "Time from request to the end of the response, by route template and method",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "rapport_encoder_batch_size",
            "Photos per forward pass",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )
        self.encoder_seconds = Histogram(
            "rapport_encoder_batch_seconds",
            "Time of one forward pass",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "rapport_encoder_queue_depth", "Photos waiting to be encoded", registry=self.registry
        )

    def observe_batch(self, stats: BatchStats) -> None:
        self.batch_size.observe(stats.size)
        self.encoder_seconds.observe(stats.seconds)

    def track_queue(self, depth: Callable[[], int]) -> None:
        self.queue_depth.set_function(depth)

    def track_cache(
        self, stats: Callable[[], CacheStats], name: str = "index", what: str = "user indexes"
    ) -> None:
        """Export a cache's size, hits and misses as ``rapport_<name>_cache_*``."""
        self.registry.register(_CacheCollector(stats, name, what))


class _CacheCollector(Collector):
    def __init__(self, stats: Callable[[], CacheStats], name: str, what: str) -> None:
        self._stats, self._name, self._what = stats, name, what

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        stats, prefix, what = self._stats(), f"rapport_{self._name}_cache", self._what
        yield GaugeMetricFamily(f"{prefix}_entries", f"Cached {what}", value=stats.entries)
        yield GaugeMetricFamily(f"{prefix}_bytes", f"Memory of cached {what}", value=stats.nbytes)
        yield CounterMetricFamily(
            f"{prefix}_hits", f"Retrievals served by cached {what}", value=stats.hits
        )
        yield CounterMetricFamily(
            f"{prefix}_misses", f"Retrievals that loaded {what} from SQL", value=stats.misses
        )


class MetricsMiddleware:
    """Counts and times every HTTP request under its route template (never the raw path)."""

    def __init__(self, app: ASGIApp, metrics_of: Callable[[], Metrics]) -> None:
        self.app = app
        # Looked up per request: the metrics live with the services built at start-up.
        self.metrics_of = metrics_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            method = scope["method"]
            metrics = self.metrics_of()
            metrics.requests.labels(template, method, str(status)).inc()
            metrics.latency.labels(template, method).observe(time.perf_counter() - started)
