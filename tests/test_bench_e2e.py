"""A short end-to-end bench against a live server over the engine double (a few seconds)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tolk_bench.clients import TolkSse, WsPool
from tolk_bench.frontend import frontend_ceiling
from tolk_bench.loadonly import run_load
from tolk_bench.paths import SAMPLE_DATA
from tolk_bench.report import summary, write_results
from tolk_bench.runner import Progress
from tolk_bench.suite import Plan
from tolk_bench.workload import RequestSpec, read_pairs


def test_sample_data_is_attributed() -> None:
    assert len(read_pairs(SAMPLE_DATA)) >= 50
    readme = (SAMPLE_DATA.parent / "README.md").read_text(encoding="utf-8")
    assert "Sentences from Tatoeba (https://tatoeba.org), licensed CC-BY 2.0 FR." in readme


def test_load_ws_and_sse(fake_server: str, tmp_path: Path) -> None:
    plan = Plan(concurrency=[1, 4], requests=12, max_duration_s=10.0, warmup=2, rates=[100.0],
                rate_requests=10, long_requests=2, long_chars=400, long_concurrency=2,
                max_tokens=8, long_max_tokens=64, streams_per_conn=2)
    doc = run_load(fake_server, plan, SAMPLE_DATA, ["ws", "sse"], progress_enabled=False)
    for name in ("tolk-ws", "tolk-sse"):
        points = doc["targets"][name]["points"]
        assert [p["workload"] for p in points] == ["sweep", "sweep", "poisson", "long"]
        for p in points:
            m = p["metrics"]
            assert m["failed"] == 0, m["errors"]
            assert m["completed"] == p["requests"]
            assert m["stream_mismatches"] == 0
            assert 0 < m["ttft_ms"]["p50"] <= m["e2el_ms"]["p50"]
            assert m["output_throughput"] > 0 and m["request_throughput"] > 0
            assert len(p["samples"]["ttft_ms"]) == p["requests"]
        sweep = points[0]
        # the engine double stops at max_tokens: 8 tokens, 8 token frames per request
        assert set(sweep["samples"]["output_tokens"]) <= set(range(1, 9))
        assert sweep["metrics"]["itl_ms"]["p50"] > 0
        long_point = points[3]
        assert max(long_point["samples"]["output_tokens"]) > 8

    doc["machine"]["gpus"] = []
    paths = write_results(doc, tmp_path)
    names = {p.name for p in paths}
    assert {"results.json", "summary.md", "latency_vs_concurrency.png",
            "throughput_vs_concurrency.png", "latency_cdf.png"} <= names
    md = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert "| tolk-ws | 4 |" in md and "| tolk-sse | 1 |" in md
    assert json.loads((tmp_path / "results.json").read_text())["targets"]["tolk-ws"]


async def test_errors_counted_by_code(fake_server: str) -> None:
    pool = await WsPool.open(fake_server, 1)
    sse = TolkSse(fake_server, 2)
    try:
        bad = RequestSpec("Hello there.", "en", "xx", "", 8)
        good = RequestSpec("Hello there, friend.", "en", "fi", "", 8)
        r_ws, r_sse, ok = await asyncio.gather(pool.request(bad), sse.request(bad),
                                               pool.request(good))
    finally:
        await pool.close()
        await sse.close()
    assert not r_ws.success and r_ws.error == "unsupported_language"
    assert not r_sse.success and r_sse.error == "unsupported_language"
    assert ok.success and ok.output_tokens >= 1 and ok.text


async def test_frontend_ceiling_small(fake_server: str) -> None:
    res = await frontend_ceiling(fake_server, None, Progress(enabled=False), concurrency=[8],
                                 requests=40, long_chars=300, idle_counts=[30],
                                 max_duration_s=10.0, streams_per_conn=4)
    assert res["requests_per_s_max"] > 0
    assert res["short"][0]["failed"] == 0
    assert res["long"]["frames"] > 40
    idle = res["idle"][0]
    assert idle["opened"] == idle["alive"] == 30 and idle["responsive"]
    md = summary({"started": "2026-01-01", "machine": {
        "cpu_model": "x", "cpu_cores_usable": 2, "ram_gib": 1, "gpus": [], "os": "linux"},
        "frontend": res})
    assert "Front end alone" in md


def test_cli_parsing() -> None:
    from tolk_server.cli.commands import build_parser

    p = build_parser()
    ns = p.parse_args(["bench", "--concurrency", "1,4,16", "--rates", "2 8", "--no-frontend"])
    assert ns.func.__name__ == "_cmd_suite"
    assert ns.concurrency == [1, 4, 16] and ns.rates == [2.0, 8.0] and not ns.frontend
    ns = p.parse_args(["bench", "quality", "--data", "x.tsv", "--limit", "5", "--no-split"])
    assert ns.func.__name__ == "_cmd_quality"
    assert (ns.data, ns.limit, ns.split, ns.concurrency) == ("x.tsv", 5, False, 8)
    ns = p.parse_args(["bench", "load", "--url", "http://127.0.0.1:1"])
    assert ns.func.__name__ == "_cmd_load" and ns.concurrency == [1, 4, 16, 64, 256]
