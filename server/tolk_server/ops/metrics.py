"""Prometheus metrics, in a registry of the app's own (so several apps can coexist in tests).

With `tolk serve --workers N` the supervisor sets `PROMETHEUS_MULTIPROC_DIR` (a fresh
private folder) before it starts the workers: prometheus-client's multiprocess mode, in
which every worker writes its values there and `/metrics`, on any worker, adds them up
(gauges by their `multiprocess_mode`; process_* metrics are not reported in that mode).
"""

from __future__ import annotations

import os

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    multiprocess,
)

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The multiprocess folder (None: one process, this one's registry)."""
    return os.environ.get(MULTIPROC_DIR_ENV) or None


def process_exited(pid: int) -> None:
    """A worker has exited: its live gauges no longer count (its counters still do)."""
    path = multiprocess_dir()
    if path:
        multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10, 30)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)  # process_resident_memory_bytes, cpu seconds, fds
        self.first_token = Histogram(
            "tolk_first_token_seconds", "Time from request to first output token.",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.duration = Histogram(
            "tolk_request_duration_seconds", "Time from request to its terminal frame.",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.output_tokens = Counter(
            "tolk_output_tokens", "Output tokens generated.", registry=r
        )
        self.requests = Counter(
            "tolk_requests", "Translation requests finished, by outcome.", ["outcome"], registry=r
        )
        self.errors = Counter("tolk_errors", "Error frames sent, by code.", ["code"], registry=r)
        self.connections = Gauge(
            "tolk_active_connections", "Open WebSocket connections.", registry=r,
            multiprocess_mode="livesum",
        )
        self.inflight = Gauge("tolk_inflight_requests", "Requests in flight.", registry=r,
                              multiprocess_mode="livesum")
        self.fallbacks = Counter(
            "tolk_fallbacks_total", "Requests handed to the next model of their route.",
            ["model", "to", "reason"], registry=r,
        )
        self.first_chunk = Histogram(
            "tolk_first_chunk_seconds", "Time to the first streamed chunk, by granularity.",
            ["granularity"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.chunk_chars = Histogram(
            "tolk_chunk_chars", "Characters per streamed chunk, by granularity.",
            ["granularity"], buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 1024), registry=r,
        )
        self.cache = Counter(
            "tolk_cache_lookups", "Result cache lookups, by result (hit or miss).", ["result"],
            registry=r,
        )
        self.engine_running = Gauge(
            "tolk_engine_running_requests", "Requests the engine holds.", registry=r,
            multiprocess_mode="livesum",
        )
        self.worker_up = Gauge(
            "tolk_worker_up", "1 for each live worker of `tolk serve --workers N`, by index.",
            ["worker"], registry=r, multiprocess_mode="livesum",
        )
        self._shared: CollectorRegistry | None = None
        if path := multiprocess_dir():
            self._shared = CollectorRegistry()
            multiprocess.MultiProcessCollector(self._shared, path=path)  # type: ignore[no-untyped-call]

    def render(self) -> bytes:
        return generate_latest(self._shared or self.registry)
