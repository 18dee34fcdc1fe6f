"""Prometheus metrics: HTTP traffic, the encoder's batches, the caches.

One process exports its own registry. Under ``rapport serve --workers N`` every worker
writes its values to files in ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's
multiprocess mode) and any worker's ``/metrics`` answers the sum over all of them. The
registry is built with the services; ``app.http.metrics`` counts the HTTP requests into it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from retrieval.batching import BatchStats
from retrieval.index import CacheStats

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    """The service's metrics, in a registry of its own (one per app instance).

    With ``multiprocess_dir`` (the directory prometheus_client was imported with, from
    ``PROMETHEUS_MULTIPROC_DIR``), ``registry`` collects every process's values from
    that directory; values that live in this process only (queue depth, cache
    statistics) are copied into it after each request and batch.
    """

    def __init__(self, multiprocess_dir: Path | None = None) -> None:
        own = CollectorRegistry()
        self._multiprocess_dir = multiprocess_dir
        self._refreshers: list[Callable[[], None]] = []
        if multiprocess_dir is None:
            self.registry = own
        else:
            # The metrics themselves stay out of the exported registry: it reads them
            # back from the directory, this process's included.
            self.registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(self.registry, path=str(multiprocess_dir))
            _forget_dead_workers(multiprocess_dir)
        self._own = own
        self.requests = Counter(
            "rapport_http_requests_total",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=own,
        )
        self.latency = Histogram(
            "rapport_http_request_duration_seconds",
            "Time from request to the end of the response, by route template and method",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=own,
        )
        self.batch_size = Histogram(
            "rapport_encoder_batch_size",
            "Photos per forward pass",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=own,
        )
        self.encoder_seconds = Histogram(
            "rapport_encoder_batch_seconds",
            "Time of one forward pass",
            buckets=LATENCY_BUCKETS,
            registry=own,
        )
        # livesum: the photos waiting in the workers alive now, summed.
        self.queue_depth = Gauge(
            "rapport_encoder_queue_depth",
            "Photos waiting to be encoded",
            multiprocess_mode="livesum",
            registry=own,
        )

    @property
    def multiprocess(self) -> bool:
        return self._multiprocess_dir is not None

    def observe_batch(self, stats: BatchStats) -> None:
        self.batch_size.observe(stats.size)
        self.encoder_seconds.observe(stats.seconds)
        self.refresh()

    def track_queue(self, depth: Callable[[], int]) -> None:
        if self.multiprocess:
            self._refreshers.append(lambda: self.queue_depth.set(depth()))
        else:
            self.queue_depth.set_function(depth)

    def track_cache(
        self, stats: Callable[[], CacheStats], name: str = "index", what: str = "user indexes"
    ) -> None:
        """Export a cache's size, hits and misses as ``rapport_<name>_cache_*``."""
        if self.multiprocess:
            self._refreshers.append(_CacheCopier(stats, name, what, self._own))
        else:
            self._own.register(_CacheCollector(stats, name, what))

    def refresh(self) -> None:
        """Copy this process's live values into the shared directory (multiprocess mode)."""
        for refresh in self._refreshers:
            refresh()

    def exposition(self) -> bytes:
        """The text a Prometheus scrape gets: every worker's values in multiprocess mode."""
        self.refresh()
        return generate_latest(self.registry)

    def close(self) -> None:
        """Drop this process's live gauges from the shared directory (its counters stay)."""
        if self._multiprocess_dir is not None:
            multiprocess.mark_process_dead(os.getpid(), str(self._multiprocess_dir))


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


def _forget_dead_workers(directory: Path) -> None:
    """Drop the live gauges of workers that died without a clean exit (SIGKILL, OOM).

    Runs as a worker starts, which is when uvicorn replaces a dead one. Their counters
    and histograms stay: the totals of the run never go backwards.
    """
    for path in directory.glob("gauge_live*_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, str(directory))
        except PermissionError:  # alive, another user's
            pass


class _CacheCopier:
    """A cache's statistics as multiprocess gauges and counters, updated by ``__call__``."""

    def __init__(
        self, stats: Callable[[], CacheStats], name: str, what: str, registry: CollectorRegistry
    ) -> None:
        prefix = f"rapport_{name}_cache"
        self._stats = stats
        # livesum: what the workers alive now hold, together.
        self._entries = Gauge(
            f"{prefix}_entries", f"Cached {what}", multiprocess_mode="livesum", registry=registry
        )
        self._bytes = Gauge(
            f"{prefix}_bytes",
            f"Memory of cached {what}",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self._hits = Counter(
            f"{prefix}_hits", f"Retrievals served by cached {what}", registry=registry
        )
        self._misses = Counter(
            f"{prefix}_misses", f"Retrievals that loaded {what} from SQL", registry=registry
        )
        self._counted = CacheStats(entries=0, nbytes=0, hits=0, misses=0)
        # Requests (event loop) and batches (encoder thread) both refresh.
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            stats = self._stats()
            self._entries.set(stats.entries)
            self._bytes.set(stats.nbytes)
            # The cache counts for itself; the counters advance by what it counted since.
            self._hits.inc(max(0, stats.hits - self._counted.hits))
            self._misses.inc(max(0, stats.misses - self._counted.misses))
            self._counted = stats
