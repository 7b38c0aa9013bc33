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
        self._engine_and_store(r)
        self._shared: CollectorRegistry | None = None
        if path := multiprocess_dir():
            self._shared = CollectorRegistry()
            multiprocess.MultiProcessCollector(self._shared, path=path)  # type: ignore[no-untyped-call]

    def _engine_and_store(self, r: CollectorRegistry) -> None:
        """The gauges of the engines, the state store and the workers."""
        self.engine_running = Gauge(
            "tolk_engine_running_requests", "Requests the engine holds.", registry=r,
            multiprocess_mode="livesum",
        )
        self.store_errors = Counter(
            "tolk_store_errors", "State store calls that failed or were skipped while it was "
            "down, by operation.", ["op"], registry=r,
        )
        self.store_up = Gauge("tolk_store_up", "Whether the state store answers (1) or not.",
                              registry=r, multiprocess_mode="livemin")
        self.store_up.set(1)
        # Per pod, for autoscaling and alerts (deploy/helm/tolk): set at each scrape.
        self.engine_queue = Gauge(
            "tolk_engine_queue_depth",
            "Requests the local engines hold beyond their batch (max_num_seqs x data parallel "
            "size): they wait for a slot (a lower bound of vLLM's waiting queue).", registry=r,
            multiprocess_mode="livemostrecent",  # --workers: the scraping worker's, of all
        )
        self.engine_dead = Gauge(
            "tolk_engine_dead", "1 when this model's engine died (its routes fall back).",
            ["model"], registry=r, multiprocess_mode="livemax",
        )
        self.worker_up = Gauge(
            "tolk_worker_up", "1 for each live worker of `tolk serve --workers N`, by index.",
            ["worker"], registry=r, multiprocess_mode="livesum",
        )

    @property
    def shared(self) -> bool:
        """Multiprocess mode: the values of every worker of `tolk serve --workers N`."""
        return self._shared is not None

    def value(self, name: str) -> float:
        """A sample's value as /metrics reports it (with --workers: over every worker)."""
        return float((self._shared or self.registry).get_sample_value(name) or 0.0)

    def render(self) -> bytes:
        return generate_latest(self._shared or self.registry)
