"""The benchmark's metric math on synthetic timelines (exact numbers), and the same
definitions as `vllm bench serve`."""

from __future__ import annotations

import pytest

from tolk_bench.metrics import RequestResult, compute_metrics, ratio
from tolk_bench.workload import poisson_delays


def timeline() -> list[RequestResult]:
    return [
        # 4 tokens: TTFT 100 ms, then chunks at +50, +50, +100 ms: E2E 300 ms
        RequestResult(success=True, start_time=0.0, ttft=0.1, itl=[0.05, 0.05, 0.1],
                      latency=0.3, output_tokens=4, chunks=4),
        # 2 tokens in 2 chunks
        RequestResult(success=True, start_time=0.5, ttft=0.2, itl=[0.1], latency=0.3,
                      output_tokens=2, chunks=2),
        # 1 token: no TPOT
        RequestResult(success=True, start_time=1.0, ttft=0.3, itl=[], latency=0.3,
                      output_tokens=1, chunks=1),
        RequestResult(success=False, error="overloaded"),
        RequestResult(success=False, error="overloaded"),
        RequestResult(success=False, error="timeout"),
    ]


def test_metrics_exact() -> None:
    m = compute_metrics(timeline(), duration_s=2.0)
    assert m["completed"] == 3
    assert m["failed"] == 3
    assert m["errors"] == {"overloaded": 2, "timeout": 1}
    assert m["total_output_tokens"] == 7
    assert m["request_throughput"] == pytest.approx(1.5)
    assert m["output_throughput"] == pytest.approx(3.5)
    assert m["chunks_per_s"] == pytest.approx(3.5)
    ttft = m["ttft_ms"]  # [100, 200, 300], linear interpolation
    assert ttft["p50"] == pytest.approx(200.0)
    assert ttft["p90"] == pytest.approx(280.0)
    assert ttft["p95"] == pytest.approx(290.0)
    assert ttft["p99"] == pytest.approx(298.0)
    assert ttft["mean"] == pytest.approx(200.0)
    # TPOT per request: (300-100)/3 and (300-200)/1; the 1-token request has none
    tpot = m["tpot_ms"]
    assert tpot["mean"] == pytest.approx((200 / 3 + 100) / 2)
    assert tpot["p50"] == pytest.approx((200 / 3 + 100) / 2)
    assert tpot["p99"] == pytest.approx(200 / 3 + 0.99 * (100 - 200 / 3))
    # ITL pooled over requests: [50, 50, 100, 100]
    itl = m["itl_ms"]
    assert itl["p50"] == pytest.approx(75.0)
    assert itl["p90"] == pytest.approx(100.0)
    assert itl["mean"] == pytest.approx(75.0)
    assert m["e2el_ms"]["p50"] == pytest.approx(300.0)
    assert m["e2el_ms"]["p99"] == pytest.approx(300.0)


def test_metrics_empty_is_zero_like_vllm() -> None:
    m = compute_metrics([RequestResult(error="engine_error")], duration_s=1.0)
    assert m["completed"] == 0
    assert m["ttft_ms"]["p99"] == 0.0
    assert m["tpot_ms"]["p50"] == 0.0
    assert m["output_throughput"] == 0.0


def test_ratio() -> None:
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(1.0, 0.0) is None
    assert ratio(None, 1.0) is None
    assert ratio(float("nan"), 1.0) is None


def test_poisson_delays_mirror_vllm() -> None:
    import numpy as np

    d = poisson_delays(1000, rate=20.0, seed=3)
    assert d == poisson_delays(1000, rate=20.0, seed=3)
    assert np.mean(d) == pytest.approx(1 / 20, rel=0.1)
    assert poisson_delays(3, rate=float("inf")) == [0.0, 0.0, 0.0]


@pytest.mark.engine
def test_same_numbers_as_vllm_bench_serve() -> None:
    """Our metrics equal vLLM's own `calculate_metrics` on the same timelines."""
    serve = pytest.importorskip("vllm.benchmarks.serve")
    from vllm.benchmarks.lib.endpoint_request_func import RequestFuncOutput

    ours = timeline()
    outs = [RequestFuncOutput(success=r.success, latency=r.latency, ttft=r.ttft,
                              itl=list(r.itl), output_tokens=r.output_tokens,
                              start_time=r.start_time, error=r.error) for r in ours]
    pct = [50.0, 90.0, 95.0, 99.0]
    theirs, _ = serve.calculate_metrics(
        input_requests=[None] * len(outs), outputs=outs, dur_s=2.0, tokenizer=None,
        selected_percentiles=pct, goodput_config_dict={})
    m = compute_metrics(ours, 2.0)
    assert m["completed"] == theirs.completed
    assert m["total_output_tokens"] == theirs.total_output
    assert m["request_throughput"] == pytest.approx(theirs.request_throughput)
    assert m["output_throughput"] == pytest.approx(theirs.output_throughput)
    for key, name in (("ttft_ms", "ttft"), ("tpot_ms", "tpot"), ("itl_ms", "itl"),
                      ("e2el_ms", "e2el")):
        assert m[key]["mean"] == pytest.approx(getattr(theirs, f"mean_{name}_ms"))
        assert m[key]["median"] == pytest.approx(getattr(theirs, f"median_{name}_ms"))
        for p, v in getattr(theirs, f"percentiles_{name}_ms"):
            assert m[key][f"p{p:g}"] == pytest.approx(v)


def test_quality_offline_plan_mirrors_sentence_splitting() -> None:
    from types import SimpleNamespace

    from tolk_bench.quality import offline_plan, reassemble
    from tolk_bench.workload import RequestSpec

    setup = SimpleNamespace(render=lambda text, src, tgt: f"<2{tgt}>{text}<sep>")
    line = RequestSpec("The shirt is dirty.  It must be washed.", "en", "fi", "", 16)
    reqs, layout = offline_plan(setup, [line], split=True)  # type: ignore[arg-type]
    assert [r.text for r in reqs] == ["The shirt is dirty.", "It must be washed."]
    assert reqs[1].prompt == "<2fi>It must be washed.<sep>"
    assert reassemble(layout, ["A.", "B."]) == ["A.  B."]
    reqs, layout = offline_plan(setup, [line], split=False)  # type: ignore[arg-type]
    assert [r.text for r in reqs] == [line.text]
    assert reassemble(layout, ["X"]) == ["X"]
