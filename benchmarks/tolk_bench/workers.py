"""`tolk serve --workers N` against `--workers 1`, in the same run on the same host.

- `tolk bench frontend --workers 1,2`: the front end over the null engine (each worker has
  its own echo engine): requests/s and requests per server CPU-second, the CPU of the
  supervisor and every worker summed.
- `tolk bench workers --workers 1,2`: the real engine (one engine core for all workers):
  output tokens/s and TTFT p50/p95 at one concurrency (16 by default), and the CPU of the
  front-end processes and of the engine's, apart.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from .clients import WsPool
from .metrics import compute_metrics
from .runner import Point, Progress, run_point, warm_up
from .servers import (
    TOLK_BENCH_ENV,
    ServerProcess,
    child_env,
    family_cpu_s,
    free_port,
    tolk_command,
)
from .workload import read_pairs, sentence_specs


def run_frontend_workers(opts: dict[str, Any], counts: list[int], rounds: int, logs: Path,
                         prog: Progress, rate: float | None = None) -> dict[str, Any]:
    """`frontend_ceiling` for each worker count, `rounds` times interleaved (1, 2, 1, 2, …
    on a shared host); then the means per count and their ratios to the first count's.
    With `rate`, also an open-loop point at that many short requests/s: CPU per request at
    the same load for every count (below saturation, so the split's own cost)."""
    from .frontend import fake_server, frontend_ceiling

    runs: list[dict[str, Any]] = []
    for r in range(rounds):
        for n in counts:
            prog.log(f"[bold]front end over the null engine, --workers {n}, round {r + 1}[/bold]")
            try:
                with fake_server(logs, n) as srv:
                    base = srv.ready_url.rsplit("/", 1)[0]
                    res = asyncio.run(frontend_ceiling(base, srv.pid, prog, **opts))
                    if rate:
                        res["short"].append(asyncio.run(_at_rate(base, srv.pid, rate, opts,
                                                                 prog)))
                    res["startup_s"] = srv.startup_s
            except Exception as exc:
                prog.log(f"[red]--workers {n} failed: {exc}[/red]")
                res = {"error": str(exc)[:2000]}
            runs.append({"workers": n, "round": r + 1, **res})
    return {"rounds": rounds, "runs": runs, "comparison": _compare(runs, counts)}


async def _at_rate(base: str, pid: int, rate: float, opts: dict[str, Any],
                   prog: Progress) -> dict[str, Any]:
    from .frontend import SHORT_TEXT, _measured
    from .workload import RequestSpec

    n = max(200, int(rate * min(20.0, opts["max_duration_s"])))
    point = Point("frontend", [RequestSpec(SHORT_TEXT, "en", "fi", "", 64)] * n, rate=rate,
                  max_duration_s=opts["max_duration_s"])
    conns = max(1, 64 // opts["streams_per_conn"])
    res = await _measured(base, pid, point, conns, prog, f"null engine rate={rate:g}/s")
    res["concurrency"] = f"{rate:g}/s"  # the row's label: an offered rate, not a concurrency
    return res


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _compare(runs: list[dict[str, Any]], counts: list[int]) -> list[dict[str, Any]]:
    """Per concurrency and worker count: the mean requests/s, requests per CPU-second and
    CPU in use over the rounds, and the ratios to the first count's."""
    ok = [r for r in runs if not r.get("error")]
    levels = list(dict.fromkeys(p["concurrency"] for r in ok for p in r["short"]))
    out: list[dict[str, Any]] = []
    for c in levels:
        rows = []
        for n in counts:
            pts = [p for r in ok if r["workers"] == n for p in r["short"]
                   if p["concurrency"] == c]
            rows.append({"concurrency": c, "workers": n, "rounds": len(pts),
                         "requests_per_s": _mean([p["requests_per_s"] for p in pts]),
                         "requests_per_cpu_s": _mean([p["requests_per_cpu_s"] for p in pts
                                                      if p["requests_per_cpu_s"]]),
                         "server_cpu_util": _mean([p["server_cpu_util"] for p in pts
                                                   if p["server_cpu_util"] is not None])})
        base = rows[0]
        for row in rows:
            rps, cpu = row["requests_per_s"], row["requests_per_cpu_s"]
            row["rps_vs_base"] = rps / base["requests_per_s"] if rps and base[
                "requests_per_s"] else None
            row["cpu_per_request_vs_base"] = base["requests_per_cpu_s"] / cpu if cpu and base[
                "requests_per_cpu_s"] else None
        out += rows
    return out


def engine_server(flags: list[str], env: dict[str, str], n: int, logs: Path) -> ServerProcess:
    port = free_port()
    store = f"sqlite:///{logs.resolve()}/store-w{n}.db"
    return ServerProcess(f"tolk --workers {n}",
                         tolk_command(port, [*flags, "--workers", str(n), "--asr-backend",
                                             "off"]),
                         f"http://127.0.0.1:{port}/ready",
                         child_env({**env, **TOLK_BENCH_ENV, "TOLK_STORE": store}),
                         logs / f"tolk-w{n}.log")


async def _engine_point(base: str, pid: int, specs: list[Any], concurrency: int,
                        streams_per_conn: int, prog: Progress, label: str) -> dict[str, Any]:
    pool = await WsPool.open(base, max(1, -(-concurrency // streams_per_conn)))
    try:
        await warm_up(pool.request, specs[:8], 4)
        fe0, en0 = family_cpu_s(pid, engine=False), family_cpu_s(pid, engine=True)
        pr = await run_point(pool.request, Point("sweep", specs, concurrency=concurrency,
                                                 max_duration_s=300), prog, label)
        fe1, en1 = family_cpu_s(pid, engine=False), family_cpu_s(pid, engine=True)
    finally:
        await pool.close()
    m = compute_metrics(pr.results, pr.duration_s)
    done = m["completed"] or 1
    return {"concurrency": concurrency, "requests": len(pr.results), "failed": m["failed"],
            "errors": m["errors"], "duration_s": pr.duration_s,
            "output_tokens_per_s": m["output_throughput"],
            "requests_per_s": m["request_throughput"],
            "ttft_ms": m["ttft_ms"], "e2el_ms": m["e2el_ms"],
            "frontend_cpu_s": fe1 - fe0, "engine_cpu_s": en1 - en0,
            "frontend_cpu_ms_per_request": (fe1 - fe0) * 1000 / done}


def run_engine_workers(setup: Any, data: Path, counts: list[int], rounds: int,
                       concurrency: int, requests: int, max_tokens: int,
                       streams_per_conn: int, logs: Path, prog: Progress) -> dict[str, Any]:
    """Each worker count `rounds` times, interleaved (1, 2, 1, 2, …) on a shared host."""
    specs = sentence_specs(read_pairs(data), requests, setup.render, max_tokens)
    runs: dict[str, list[dict[str, Any]]] = {str(n): [] for n in counts}
    for r in range(rounds):
        for n in counts:
            label = f"--workers {n} c={concurrency} round {r + 1}"
            prog.log(f"[bold]real engine, {label}[/bold]")
            try:
                with engine_server(setup.tolk_flags(), setup.env, n, logs) as srv:
                    base = srv.ready_url.rsplit("/", 1)[0]
                    res = asyncio.run(_engine_point(base, srv.pid, specs, concurrency,
                                                    streams_per_conn, prog, label))
                    res["startup_s"] = srv.startup_s
            except Exception as exc:
                prog.log(f"[red]{label} failed: {exc}[/red]")
                res = {"error": str(exc)[:2000]}
            runs[str(n)].append(res)
    return {"concurrency": concurrency, "requests": requests, "max_tokens": max_tokens,
            "streams_per_conn": streams_per_conn, "runs": runs}


def frontend_workers_section(doc: dict[str, Any]) -> list[str]:
    lines = ["## `tolk serve --workers N` over the null engine", "",
             f"Means over {doc['rounds']} interleaved round(s); server CPU: the supervisor and "
             "its workers summed.", "",
             "| concurrency | workers | req/s | req/s vs first | req per server CPU-s "
             "| CPU per request vs first | server CPU (cores) |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for c in doc["comparison"]:
        lines.append(f"| {c['concurrency']} | {c['workers']} | {_n(c['requests_per_s'])} | "
                     f"{_x(c['rps_vs_base'])} | {_n(c['requests_per_cpu_s'])} | "
                     f"{_x(c['cpu_per_request_vs_base'])} | {_n(c['server_cpu_util'], 2)} |")
    return lines


def engine_workers_section(doc: dict[str, Any]) -> list[str]:
    lines = [f"## `tolk serve --workers N`, real engine, c={doc['concurrency']}", "",
             "| workers | round | output tok/s | req/s | TTFT p50 (ms) | TTFT p95 (ms) "
             "| front-end CPU ms/request | engine CPU (s) | failed |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for n, runs in doc["runs"].items():
        for i, r in enumerate(runs):
            if r.get("error"):
                lines.append(f"| {n} | {i + 1} | failed: {r['error'][:80]} |||||||")
                continue
            lines.append(f"| {n} | {i + 1} | {r['output_tokens_per_s']:.1f} | "
                         f"{r['requests_per_s']:.2f} | {r['ttft_ms']['p50']:.0f} | "
                         f"{r['ttft_ms']['p95']:.0f} | {r['frontend_cpu_ms_per_request']:.1f} | "
                         f"{r['engine_cpu_s']:.1f} | {r['failed']} |")
    return lines


def _x(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}×"


def _n(v: float | None, digits: int = 0) -> str:
    return "–" if v is None else f"{v:.{digits}f}"
