"""Prometheus metrics, in a registry of the app's own (so several apps can coexist in tests)."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

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
            "tolk_active_connections", "Open WebSocket connections.", registry=r
        )
        self.inflight = Gauge("tolk_inflight_requests", "Requests in flight.", registry=r)
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
            "tolk_engine_running_requests", "Requests the engine holds.", registry=r
        )
        self.store_errors = Counter(
            "tolk_store_errors", "State store calls that failed or were skipped while it was "
            "down, by operation.", ["op"], registry=r,
        )
        self.store_up = Gauge("tolk_store_up", "Whether the state store answers (1) or not.",
                              registry=r)
        self.store_up.set(1)
        # Per pod, for autoscaling and alerts (deploy/helm/tolk): set at each scrape.
        self.engine_queue = Gauge(
            "tolk_engine_queue_depth",
            "Requests the local engines hold beyond their batch (max_num_seqs x data parallel "
            "size): they wait for a slot (a lower bound of vLLM's waiting queue).", registry=r,
        )
        self.engine_dead = Gauge(
            "tolk_engine_dead", "1 when this model's engine died (its routes fall back).",
            ["model"], registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
