"""The whole comparison: raw engine, `vllm serve`, tolk over WebSocket and over SSE, one after
another on the same model, machine and prompts; then the front end over the null engine."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .clients import OpenAICompletions, RequestFn, TolkSse, WsPool
from .context import BenchSetup, check_prompt
from .metrics import RequestResult, compute_metrics, ratio
from .runner import Point, PointResult, Progress, run_point, warm_up
from .servers import (
    TOLK_BENCH_ENV,
    ServerProcess,
    busy_processes,
    child_env,
    free_port,
    machine_info,
    proc_cpu_s,
    raise_fd_limit,
    tolk_command,
    vllm_serve_command,
)
from .workload import RequestSpec, long_specs, read_pairs, sentence_specs

TARGETS = ("raw", "vllm-serve", "tolk-ws", "tolk-sse")
SERVED_NAME = "bench"


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


def point_record(pr: PointResult) -> dict[str, Any]:
    ok = [r for r in pr.results if r.success]
    p = pr.point
    return {
        "workload": p.workload,
        "concurrency": p.concurrency,
        "rate": p.rate,
        "requests": len(p.specs),
        "issued": len(pr.results),
        "skipped": pr.skipped,
        "mean_prompt_chars": (sum(s.prompt_chars for s in ok) / len(ok)) if ok else 0,
        "metrics": compute_metrics(pr.results, pr.duration_s),
        "server_cpu_s": pr.server_cpu_s,
        "server_cpu_ms_per_request": (pr.server_cpu_s * 1000 / len(ok)
                                      if pr.server_cpu_s is not None and ok else None),
        "samples": {
            "ttft_ms": [round(r.ttft * 1000, 3) for r in ok],
            "e2el_ms": [round(r.latency * 1000, 3) for r in ok],
            "output_tokens": [r.output_tokens for r in ok],
        },
    }


async def _drive(fn: RequestFn, warm: list[RequestSpec], points: list[Point], name: str,
                 progress: Progress) -> list[PointResult]:
    await warm_up(fn, warm, 4)
    out = []
    for p in points:
        out.append(await run_point(fn, p, progress, f"{name:<10} {p.label}"))
    return out


def run_raw(setup: BenchSetup, warm: list[RequestSpec], points: list[Point], workdir: Path,
            progress_enabled: bool) -> tuple[list[PointResult], float]:
    """The raw engine in its own process (python -m tolk_bench.raw)."""
    job = {"mode": "load", "engine_args": setup.engine_args, "env": setup.env,
           "sampling": setup.sampling, "warmup": [s.to_json() for s in warm],
           "points": [p.to_json() for p in points], "progress": progress_enabled,
           "keep_text": True}
    out = _raw_job(job, workdir, "raw")
    results = []
    for p, d in zip(points, out["points"], strict=True):
        pr = PointResult(p, [RequestResult.from_json(r) for r in d["results"]], d["duration_s"],
                         d["skipped"])
        results.append(pr)
    return results, float(out["startup_s"])


def _raw_job(job: dict[str, Any], workdir: Path, name: str) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tolk-bench-") as tmp:
        jpath, opath = Path(tmp) / "job.json", Path(tmp) / "out.json"
        jpath.write_text(json.dumps(job, ensure_ascii=False), encoding="utf-8")
        env = child_env(job.get("env"))
        log = workdir / f"{name}.log"
        with log.open("wb") as fh:  # engine logs to the log file, progress bars to stderr
            proc = subprocess.run([sys.executable, "-m", "tolk_bench.raw", str(jpath),
                                   str(opath)], stdout=fh, env=env, check=False)
        if proc.returncode != 0 or not opath.exists():
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
            raise RuntimeError(f"{name} engine run failed ({proc.returncode}); log {log}\n{tail}")
        result: dict[str, Any] = json.loads(opath.read_text(encoding="utf-8"))
        return result


def offline_outputs(setup: BenchSetup, specs: list[RequestSpec], concurrency: int,
                    workdir: Path) -> tuple[list[str], float]:
    job = {"mode": "offline", "engine_args": setup.engine_args, "env": setup.env,
           "sampling": setup.sampling, "specs": [s.to_json() for s in specs],
           "concurrency": concurrency}
    out = _raw_job(job, workdir, "offline")
    return [str(t) for t in out["texts"]], float(out["startup_s"])


def tolk_server(setup: BenchSetup, workdir: Path) -> ServerProcess:
    port = free_port()
    return ServerProcess("tolk", tolk_command(port, setup.tolk_flags()),
                         f"http://127.0.0.1:{port}/ready",
                         child_env({**setup.env, **TOLK_BENCH_ENV}),
                         workdir / "tolk.log")


def vllm_server(setup: BenchSetup, workdir: Path) -> ServerProcess:
    port = free_port()
    return ServerProcess("vllm serve", vllm_serve_command(port, setup.engine_args, SERVED_NAME),
                         f"http://127.0.0.1:{port}/health", child_env(setup.env),
                         workdir / "vllm-serve.log")


def base_url(server: ServerProcess) -> str:
    return server.ready_url.rsplit("/", 1)[0]


async def _with_clients(make: Callable[[int], Awaitable[Any]], warm: list[RequestSpec],
                        points: list[Point], name: str, progress: Progress,
                        pid: int | None = None) -> list[PointResult]:
    """One client (pool) per point, sized to its concurrency; with the server's `pid`, the
    CPU time its process spent on each point."""
    out: list[PointResult] = []
    client = await make(4)
    try:
        await warm_up(client.request, warm, 4)
    finally:
        await client.close()
    for p in points:
        client = await make(p.concurrency or 16)
        try:
            cpu0 = proc_cpu_s(pid) if pid else 0.0
            pr = await run_point(client.request, p, progress, f"{name:<10} {p.label}")
            if pid:
                pr.server_cpu_s = proc_cpu_s(pid) - cpu0
            out.append(pr)
        finally:
            await client.close()
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
    return asyncio.run(_with_clients(make, warm, points, name, progress, server.pid))


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
    started = datetime.now(UTC)
    t_start = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    logs = out_dir / "logs"
    warm, points = build_points(setup, plan, data)
    doc: dict[str, Any] = {
        "schema": 1,
        "tool": "tolk bench",
        "started": started.isoformat(timespec="seconds"),
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
    first = points[0].specs[0] if points and points[0].specs else None
    if first is not None:
        doc["prompt_check"] = check_prompt(setup, first.text, first.source, first.target)
    texts: dict[str, list[str]] = {}
    with Progress(enabled=progress_enabled) as prog:
        for name in [t for t in TARGETS if t in plan.targets]:
            if name == "tolk-sse" and "tolk-ws" in plan.targets:
                continue
            prog.log(f"[bold]{name}[/bold]")
            try:
                if name == "raw":
                    prog.log("raw engine: starting AsyncLLM in a child process …")
                    results, startup = run_raw(setup, warm, points, logs, progress_enabled)
                elif name == "vllm-serve":
                    with vllm_server(setup, logs) as srv:
                        prog.log(f"vllm serve ready in {srv.startup_s:.1f}s")
                        results = run_target(name, setup, plan, warm, points, logs, prog, srv)
                        startup = srv.startup_s
                else:  # tolk: one server process, WebSocket then SSE
                    with tolk_server(setup, logs) as srv:
                        prog.log(f"tolk ready in {srv.startup_s:.1f}s")
                        startup = srv.startup_s
                        results = run_target(name, setup, plan, warm, points, logs, prog, srv)
                        if name == "tolk-ws" and "tolk-sse" in plan.targets:
                            _record(doc, texts, prog, name, results, startup)
                            name = "tolk-sse"
                            results = run_target(name, setup, plan, warm, points, logs, prog,
                                                 srv)
            except Exception as exc:
                prog.log(f"[red]{name} failed: {exc}[/red]")
                doc["targets"][name] = {"error": str(exc)[:2000], "points": []}
                if name == "tolk-ws" and "tolk-sse" in plan.targets:
                    doc["targets"]["tolk-sse"] = {"error": str(exc)[:2000], "points": []}
                continue
            _record(doc, texts, prog, name, results, startup)
        doc["same_outputs"] = same_outputs(texts)
        doc["ratios"] = ratios(doc["targets"])
        if frontend_opts is not None:
            doc["frontend"] = run_frontend(frontend_opts, logs, prog)
    if quality_opts is not None:
        from .quality import run_quality

        try:
            doc["quality"] = run_quality(setup, logs, progress_enabled=progress_enabled,
                                         **quality_opts)
        except Exception as exc:
            print(f"quality run failed: {exc}", file=sys.stderr)
            doc["quality"] = {"error": str(exc)[:2000]}
    doc["busy_at_end"] = busy_processes(exclude={os.getpid()})
    doc["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    doc["wall_s"] = time.perf_counter() - t_start
    return doc


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
    doc["targets"][name] = _target_doc(results, startup)
    texts[name] = _sweep_texts(results)
    prog.log(_one_line(name, doc["targets"][name]))


def _sweep_texts(results: list[PointResult]) -> list[str]:
    for pr in results:
        if pr.point.workload == "sweep":
            return [r.text for r in pr.results]
    return []


def _target_doc(results: list[PointResult], startup: float) -> dict[str, Any]:
    return {"startup_s": startup, "points": [point_record(pr) for pr in results]}


def _one_line(name: str, t: dict[str, Any]) -> str:
    bits = []
    for p in t["points"]:
        m = p["metrics"]
        bits.append(f"{p['workload']}@{p['concurrency'] or p['rate']}: "
                    f"TTFT p50 {m['ttft_ms']['p50']:.0f} ms, {m['output_throughput']:.1f} tok/s"
                    + (f", {m['failed']} failed" if m["failed"] else ""))
    return f"{name}: " + "; ".join(bits)
