"""The whole comparison: raw engine, `vllm serve`, tolk over WebSocket and over SSE, one after
another on the same model, machine and prompts; then the front end over the null engine."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .clients import OpenAICompletions, RequestFn, TolkSse, WsPool
from .context import BenchSetup, check_prompt
from .metrics import ratio
from .runner import Point, PointResult, Progress, run_point, warm_up
from .servers import (
    TOLK_BENCH_ENV,
    ServerProcess,
    busy_processes,
    machine_info,
    raise_fd_limit,
)
from .targets import (
    SERVED_NAME,
    base_url,
    run_raw,
    target_doc,
    tolk_server,
    vllm_server,
    with_clients,
)
from .workload import RequestSpec, long_specs, read_pairs, sentence_specs

TARGETS = ("raw", "vllm-serve", "tolk-ws", "tolk-sse")


@dataclass
class Plan:
    concurrency: list[int]
    requests: int
    max_duration_s: float
    warmup: int
    rates: list[float]
    rate_requests: int
    long_requests: int
    long_chars: int
    long_concurrency: int
    max_tokens: int
    long_max_tokens: int
    streams_per_conn: int
    seed: int = 0
    targets: list[str] = field(default_factory=lambda: list(TARGETS))

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


def build_points(setup: BenchSetup, plan: Plan, data: Path) -> tuple[list[RequestSpec],
                                                                     list[Point]]:
    pairs = read_pairs(data)
    if not pairs:
        raise SystemExit(f"no sentence pairs in {data}")
    warm = sentence_specs(pairs, plan.warmup, setup.render, plan.max_tokens, seed=plan.seed + 99)
    points: list[Point] = []
    for i, c in enumerate(plan.concurrency):
        specs = sentence_specs(pairs, plan.requests, setup.render, plan.max_tokens,
                               seed=plan.seed + i)
        points.append(Point("sweep", specs, concurrency=c, max_duration_s=plan.max_duration_s))
    for i, rate in enumerate(plan.rates):
        specs = sentence_specs(pairs, plan.rate_requests, setup.render, plan.max_tokens,
                               seed=plan.seed + 50 + i)
        points.append(Point("poisson", specs, rate=rate, max_duration_s=plan.max_duration_s,
                            seed=plan.seed + i))
    if plan.long_requests:
        specs = long_specs(pairs, plan.long_requests, setup.render, plan.long_max_tokens,
                           chars=plan.long_chars, seed=plan.seed)
        points.append(Point("long", specs, concurrency=plan.long_concurrency,
                            max_duration_s=plan.max_duration_s))
    return warm, points



async def _drive(fn: RequestFn, warm: list[RequestSpec], points: list[Point], name: str,
                 progress: Progress) -> list[PointResult]:
    await warm_up(fn, warm, 4)
    out = []
    for p in points:
        out.append(await run_point(fn, p, progress, f"{name:<10} {p.label}"))
    return out









def run_target(name: str, setup: BenchSetup, plan: Plan, warm: list[RequestSpec],
               points: list[Point], workdir: Path, progress: Progress,
               server: ServerProcess | None) -> list[PointResult]:
    assert server is not None
    url = base_url(server)

    async def ws(c: int) -> WsPool:
        return await WsPool.open(url, max(1, -(-c // plan.streams_per_conn)))

    async def sse(c: int) -> TolkSse:
        return TolkSse(url, c)

    async def oai(c: int) -> OpenAICompletions:
        return OpenAICompletions(url, SERVED_NAME, c, setup.sampling)

    make = {"tolk-ws": ws, "tolk-sse": sse, "vllm-serve": oai}[name]
    return asyncio.run(with_clients(make, warm, points, name, progress, server.pid))


def ratios(targets: dict[str, Any]) -> list[dict[str, Any]]:
    """tolk ÷ raw and tolk ÷ vllm serve for TTFT p50/p95 and output throughput, per point."""
    def index(name: str) -> dict[tuple[str, Any], dict[str, Any]]:
        t = targets.get(name) or {}
        return {(p["workload"], p["concurrency"] or p["rate"]): p["metrics"]
                for p in t.get("points", [])}

    base = {b: index(b) for b in ("raw", "vllm-serve")}
    out = []
    for tolk in ("tolk-ws", "tolk-sse"):
        for key, m in index(tolk).items():
            row: dict[str, Any] = {"target": tolk, "workload": key[0], "point": key[1]}
            for bname, b in base.items():
                bm = b.get(key)
                short = "raw" if bname == "raw" else "vllm"
                row[f"ttft_p50_vs_{short}"] = ratio(m["ttft_ms"]["p50"],
                                                    bm["ttft_ms"]["p50"] if bm else None)
                row[f"ttft_p95_vs_{short}"] = ratio(m["ttft_ms"]["p95"],
                                                    bm["ttft_ms"]["p95"] if bm else None)
                row[f"throughput_vs_{short}"] = ratio(m["output_throughput"],
                                                      bm["output_throughput"] if bm else None)
            out.append(row)
    return out


def same_outputs(texts: dict[str, list[str]]) -> dict[str, Any]:
    """Do the targets return the same text for the same prompts (greedy: they should)?"""
    ref = texts.get("raw")
    out: dict[str, Any] = {}
    for name, t in texts.items():
        if ref is None or name == "raw":
            continue
        n = min(len(ref), len(t))
        out[name] = {"compared": n, "identical": sum(1 for a, b in zip(ref, t, strict=False)
                                                     if a == b)}
    return out


def run_suite(setup: BenchSetup, plan: Plan, data: Path, out_dir: Path,
              frontend_opts: dict[str, Any] | None, quality_opts: dict[str, Any] | None,
              progress_enabled: bool = True) -> dict[str, Any]:
    raise_fd_limit()
    t_start = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    logs = out_dir / "logs"
    warm, points = build_points(setup, plan, data)
    doc = _suite_doc(setup, plan, data)
    first = points[0].specs[0] if points and points[0].specs else None
    if first is not None:
        doc["prompt_check"] = check_prompt(setup, first.text, first.source, first.target)
    texts: dict[str, list[str]] = {}
    with Progress(enabled=progress_enabled) as prog:
        run = _Targets(setup, plan, warm, points, logs, prog, progress_enabled)
        for name in [t for t in TARGETS if t in plan.targets]:
            if name == "tolk-sse" and "tolk-ws" in plan.targets:
                continue  # measured on the tolk-ws server
            prog.log(f"[bold]{name}[/bold]")
            run.measure(name, doc, texts)
        doc["same_outputs"] = same_outputs(texts)
        doc["ratios"] = ratios(doc["targets"])
        if frontend_opts is not None:
            doc["frontend"] = run_frontend(frontend_opts, logs, prog)
    if quality_opts is not None:
        doc["quality"] = _quality(setup, logs, progress_enabled, quality_opts)
    doc["busy_at_end"] = busy_processes(exclude={os.getpid()})
    doc["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    doc["wall_s"] = time.perf_counter() - t_start
    return doc


def _suite_doc(setup: BenchSetup, plan: Plan, data: Path) -> dict[str, Any]:
    """The head of results.json: the tool, the machine, the setup and the plan."""
    return {
        "schema": 1,
        "tool": "tolk bench",
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "busy_at_start": busy_processes(exclude={os.getpid()}),
        "setup": setup.describe(),
        "plan": plan.to_json(),
        "data": str(data),
        "tolk_request": {"split": False, "stream": True, "granularity": "token",
                         "server_env": TOLK_BENCH_ENV,
                         "streams_per_connection": plan.streams_per_conn},
        "targets": {},
    }


@dataclass
class _Targets:
    """Runs the targets of one suite, one after another, on the same points."""

    setup: BenchSetup
    plan: Plan
    warm: list[RequestSpec]
    points: list[Point]
    logs: Path
    prog: Progress
    progress_enabled: bool

    def measure(self, name: str, doc: dict[str, Any], texts: dict[str, list[str]]) -> None:
        """Run target `name` (tolk-ws: then tolk-sse on the same server) into `doc`; a target
        that fails is recorded with its error, and so is the one it would have run next."""
        names = [name, "tolk-sse"] if name == "tolk-ws" and "tolk-sse" in self.plan.targets \
            else [name]
        try:
            for done, results, startup in self._runs(name, names):
                _record(doc, texts, self.prog, done, results, startup)
                names.remove(done)
        except Exception as exc:
            self.prog.log(f"[red]{names[0]} failed: {exc}[/red]")
            for failed in names:
                doc["targets"][failed] = {"error": str(exc)[:2000], "points": []}

    def _runs(self, name: str, names: list[str]
              ) -> Iterator[tuple[str, list[PointResult], float]]:
        setup, logs, prog = self.setup, self.logs, self.prog
        if name == "raw":
            prog.log("raw engine: starting AsyncLLM in a child process …")
            results, startup = run_raw(setup, self.warm, self.points, logs,
                                       self.progress_enabled)
            yield name, results, startup
            return
        server = vllm_server if name == "vllm-serve" else tolk_server
        with server(setup, logs) as srv:
            prog.log(f"{'vllm serve' if name == 'vllm-serve' else 'tolk'} ready in "
                     f"{srv.startup_s:.1f}s")
            for one in list(names):  # tolk: one server process, WebSocket then SSE
                yield one, self._points(one, srv), srv.startup_s

    def _points(self, name: str, srv: ServerProcess) -> list[PointResult]:
        return run_target(name, self.setup, self.plan, self.warm, self.points, self.logs,
                          self.prog, srv)


def _quality(setup: BenchSetup, logs: Path, progress_enabled: bool,
             opts: dict[str, Any]) -> dict[str, Any]:
    from .quality import run_quality

    try:
        return run_quality(setup, logs, progress_enabled=progress_enabled, **opts)
    except Exception as exc:
        print(f"quality run failed: {exc}", file=sys.stderr)
        return {"error": str(exc)[:2000]}


def run_frontend(opts: dict[str, Any], logs: Path, prog: Progress) -> dict[str, Any]:
    from .frontend import fake_server, frontend_ceiling

    prog.log("[bold]front end over the null engine[/bold]")
    try:
        with fake_server(logs) as srv:
            res = asyncio.run(frontend_ceiling(base_url(srv), srv.pid, prog, **opts))
            res["startup_s"] = srv.startup_s
            return res
    except Exception as exc:
        prog.log(f"[red]front end run failed: {exc}[/red]")
        return {"error": str(exc)[:2000]}


def _record(doc: dict[str, Any], texts: dict[str, list[str]], prog: Progress, name: str,
            results: list[PointResult], startup: float) -> None:
    doc["targets"][name] = target_doc(results, startup)
    texts[name] = _sweep_texts(results)
    prog.log(_one_line(name, doc["targets"][name]))


def _sweep_texts(results: list[PointResult]) -> list[str]:
    for pr in results:
        if pr.point.workload == "sweep":
            return [r.text for r in pr.results]
    return []



def _one_line(name: str, t: dict[str, Any]) -> str:
    bits = []
    for p in t["points"]:
        m = p["metrics"]
        bits.append(f"{p['workload']}@{p['concurrency'] or p['rate']}: "
                    f"TTFT p50 {m['ttft_ms']['p50']:.0f} ms, {m['output_throughput']:.1f} tok/s"
                    + (f", {m['failed']} failed" if m["failed"] else ""))
    return f"{name}: " + "; ".join(bits)
