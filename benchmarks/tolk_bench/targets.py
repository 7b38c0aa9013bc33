"""The things a bench run measures: the raw engine (in a child process), tolk and vllm serve
as servers, and driving a server with one client (pool) per point."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from .context import BenchSetup
from .metrics import RequestResult, compute_metrics
from .runner import Point, PointResult, Progress, run_point, warm_up
from .servers import (
    TOLK_BENCH_ENV,
    ServerProcess,
    child_env,
    free_port,
    proc_cpu_s,
    tolk_command,
    vllm_serve_command,
)
from .workload import RequestSpec

SERVED_NAME = "bench"


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


async def with_clients(make: Callable[[int], Awaitable[Any]], warm: list[RequestSpec],
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


def target_doc(results: list[PointResult], startup: float) -> dict[str, Any]:
    return {"startup_s": startup, "points": [point_record(pr) for pr in results]}
