"""Client-side metrics, with the same definitions as `vllm bench serve`.

Mirrors `vllm/benchmarks/serve.py::calculate_metrics` and the streaming request functions in
`vllm/benchmarks/lib/endpoint_request_func.py` (vLLM 0.32):

- TTFT: from sending the request to the first streamed chunk (here: the first `token` frame).
- ITL: the gaps between successive chunk arrivals of a request, pooled over all requests.
- TPOT: per request, (e2e latency - TTFT) / (output tokens - 1), only for requests with more
  than one output token.
- E2E latency: from sending the request to the last streamed chunk.
- request throughput: completed requests / benchmark duration; output throughput: total output
  tokens (the server's count) / benchmark duration.
- Percentiles: `numpy.percentile` with its default (linear) interpolation; an empty sample gives
  0, as in vLLM.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

PERCENTILES: tuple[float, ...] = (50.0, 90.0, 95.0, 99.0)


@dataclass
class RequestResult:
    """One request as the client saw it. Times are `time.perf_counter()` seconds."""

    success: bool = False
    start_time: float = 0.0
    ttft: float = 0.0
    itl: list[float] = field(default_factory=list)
    latency: float = 0.0
    output_tokens: int = 0
    prompt_chars: int = 0
    chunks: int = 0
    text: str = ""
    error: str = ""
    error_message: str = ""
    mismatch: bool = False  # streamed pieces differ from the final text

    def to_json(self, keep_text: bool = False) -> dict[str, Any]:
        d = asdict(self)
        if not keep_text:
            d.pop("text")
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RequestResult:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def _stats_ms(values: list[float], percentiles: tuple[float, ...]) -> dict[str, float]:
    """mean, std, median and percentiles in milliseconds (vLLM: `np.x(values or 0)`)."""
    arr: Any = values or 0
    out = {
        "mean": float(np.mean(arr)) * 1000,
        "std": float(np.std(arr)) * 1000,
        "median": float(np.median(arr)) * 1000,
    }
    for p in percentiles:
        out[f"p{p:g}"] = float(np.percentile(arr, p)) * 1000
    return out


def compute_metrics(
    results: list[RequestResult],
    duration_s: float,
    percentiles: tuple[float, ...] = PERCENTILES,
) -> dict[str, Any]:
    """The benchmark metrics of one run (one target, one workload point)."""
    ttfts: list[float] = []
    tpots: list[float] = []
    itls: list[float] = []
    e2els: list[float] = []
    total_output = 0
    completed = 0
    chunks = 0
    errors: Counter[str] = Counter()
    mismatches = 0
    for r in results:
        if not r.success:
            errors[r.error or "unknown"] += 1
            continue
        completed += 1
        output_len = r.output_tokens
        total_output += output_len
        chunks += r.chunks
        if output_len > 1:
            tpots.append((r.latency - r.ttft) / (output_len - 1))
        itls += r.itl
        ttfts.append(r.ttft)
        e2els.append(r.latency)
        mismatches += int(r.mismatch)
    dur = duration_s if duration_s > 0 else float("nan")
    return {
        "completed": completed,
        "failed": sum(errors.values()),
        "errors": dict(sorted(errors.items())),
        "duration_s": duration_s,
        "total_output_tokens": total_output,
        "request_throughput": completed / dur,
        "output_throughput": total_output / dur,
        "chunks_per_s": chunks / dur,
        "stream_mismatches": mismatches,
        "ttft_ms": _stats_ms(ttfts, percentiles),
        "tpot_ms": _stats_ms(tpots, percentiles),
        "itl_ms": _stats_ms(itls, percentiles),
        "e2el_ms": _stats_ms(e2els, percentiles),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0 or a != a or b != b:
        return None
    return a / b
